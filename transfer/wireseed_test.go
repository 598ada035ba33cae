package transfer

import (
	"sync"
	"testing"
	"time"
)

// TestWireInitialSeeding: a wire seeder (InitialSeeding) of a bundle it made, capped at
// 1 MiB/s, serves six wire fetchers that know of each other; it uploads
// about one copy of the bundle (initial seeding: each piece leaves it
// about once while the fetchers copy pieces among themselves), where a
// seed serving normally uploads several, and every fetch completes. The
// relay.json pieces are open to all, so the bound allows for them, and
// for a piece offered twice while its first copy was not passed on yet.
func TestWireInitialSeeding(t *testing.T) {
	t.Parallel()
	const size = 4 << 20
	s, b := seeder(t, map[string]int64{"app": size}, Config{Engine: EngineWire, UploadRate: 1 << 20, InitialSeeding: true})
	fetchers := make([]*Client, 6)
	for i := range fetchers {
		fetchers[i] = newClient(t, Config{Engine: EngineWire})
	}
	peers := peersOf(append([]*Client{s}, fetchers...)...)
	var wg sync.WaitGroup
	errs := make([]error, len(fetchers))
	for i, f := range fetchers {
		wg.Go(func() {
			res, err := f.Fetch(fetchCtx(t, 3*time.Minute), FetchRequest{Key: testKey(t), Release: b.Release(testTime), Peers: peers})
			if errs[i] = err; err == nil {
				checkFetched(t, b, res)
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("fetcher %d: %v", i, err)
		}
	}
	st, _ := s.Stats(b.Infohash)
	copies := float64(st.Uploaded) / float64(st.Size)
	t.Logf("the seeder uploaded %.2f copies to %d fetchers", copies, len(fetchers))
	if copies > 1.5 {
		t.Errorf("the seeder uploaded %.2f copies of the bundle to %d fetchers, want at most 1.5", copies, len(fetchers))
	}
}
