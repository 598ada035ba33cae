package peerwire

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// TestDownloadFromAnacrolix: the info and then every piece of a relay
// bundle of several files come from a seeder running the torrent
// library's client (relay's transfer.Client.Seed), and the files are the
// seeded bytes; OnPiece saw every piece once, verified.
func TestDownloadFromAnacrolix(t *testing.T) {
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 3<<20 + 12345, "lib/x.so": 700 << 10, "README.md": 999}, 64<<10)
	seed := anacrolixSeeds(t, b)
	ctx := ctxFor(t, 2*time.Minute)
	c := New(Config{})
	tor, dir := leecher(t, ctx, c, b, seed)
	var mu sync.Mutex
	var seen []int
	err := tor.Download(ctx, DownloadOptions{Peers: []string{seed}, OnPiece: func(i int, data []byte) error {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, i)
		if int64(len(data)) != tor.pieceSize(i) {
			t.Errorf("piece %d: %d bytes, want %d", i, len(data), tor.pieceSize(i))
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	sameFiles(t, b, dir)
	slices.Sort(seen)
	if len(seen) != tor.npieces || len(slices.Compact(seen)) != tor.npieces {
		t.Errorf("OnPiece saw %d pieces (%d distinct), the torrent has %d", len(seen), len(slices.Compact(seen)), tor.npieces)
	}
	if st := tor.Stats(); st.Pieces != st.Total || st.Bytes != b.Size {
		t.Errorf("stats %+v, want every piece and %d bytes", st, b.Size)
	}
}
