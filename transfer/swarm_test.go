package transfer

import (
	"sync"
	"testing"
	"time"

	"github.com/relay-sh/relay/record"
)

// seedCapped reports whether c keeps few requests queued at a peer that
// holds the whole bundle ih, and whether it knows such a peer at all.
func seedCapped(c *Client, ih record.Infohash) (capped, known bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, p := range c.peerBits {
		if k.ih == ih && p.seed {
			known = true
			capped = capped || p.limit != 0
		}
	}
	return capped, known
}

// TestSeedCappedInSwarm: leechers fetching together from one seeder keep
// only a few requests queued at it, so that it sends each piece to one of
// them and they trade the rest (BenchmarkSwarm16 measures the gain); a
// leecher alone with the seeder keeps the deep queue a long round trip
// needs.
func TestSeedCappedInSwarm(t *testing.T) {
	t.Parallel()
	// A slow seeder, so that the swarm is still fetching when it is
	// looked at.
	s, b := seeder(t, map[string]int64{"app": 2 << 20}, Config{UploadRate: 2 << 20})
	var ls []*Client
	for range 3 {
		ls = append(ls, newClient(t, Config{}))
	}
	peers := peersOf(append([]*Client{s}, ls...)...)
	var wg sync.WaitGroup
	errs := make([]error, len(ls))
	for i, l := range ls {
		wg.Go(func() {
			res, err := l.Fetch(fetchCtx(t, 60*time.Second), FetchRequest{Key: testKey(t), Release: b.Release(testTime), Peers: peers})
			if err == nil {
				checkFetched(t, b, res)
			}
			errs[i] = err
		})
	}
	waitFor(t, 30*time.Second, "a leecher capping its requests to the seeder", func() bool {
		capped, _ := seedCapped(ls[0], b.Infohash)
		return capped
	})
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	alone := newClient(t, Config{})
	res, err := alone.Fetch(fetchCtx(t, 60*time.Second), FetchRequest{Key: testKey(t), Release: b.Release(testTime), Peers: peersOf(s)})
	if err != nil {
		t.Fatal(err)
	}
	checkFetched(t, b, res)
	if capped, known := seedCapped(alone, b.Infohash); !known || capped {
		t.Errorf("a leecher alone with the seeder: seed known %v, capped %v; want known and not capped", known, capped)
	}
}

// TestSeedRequestsNegativeNeverCaps: SeedRequests below zero turns the
// cap off.
func TestSeedRequestsNegativeNeverCaps(t *testing.T) {
	t.Parallel()
	s, b := seeder(t, map[string]int64{"app": 1 << 20}, Config{UploadRate: 1 << 20})
	l := newClient(t, Config{SeedRequests: -1})
	others := []*Client{newClient(t, Config{}), newClient(t, Config{})}
	peers := peersOf(append([]*Client{s, l}, others...)...)
	var wg sync.WaitGroup
	for _, o := range others {
		wg.Go(func() {
			o.Fetch(fetchCtx(t, 60*time.Second), FetchRequest{Key: testKey(t), Release: b.Release(testTime), Peers: peers})
		})
	}
	res, err := l.Fetch(fetchCtx(t, 60*time.Second), FetchRequest{Key: testKey(t), Release: b.Release(testTime), Peers: peers})
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	checkFetched(t, b, res)
	if capped, _ := seedCapped(l, b.Infohash); capped {
		t.Error("SeedRequests -1: the seed was capped")
	}
}
