package peerwire

import (
	"slices"
	"testing"
	"time"
)

// TestDownloadInOrder: from a seed that answers requests in random order
// (the torrent library's), OnPiece sees every piece in index order with
// InOrder.
func TestDownloadInOrder(t *testing.T) {
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 4 << 20, "b": 10}, 64<<10)
	seed := anacrolixSeeds(t, b)
	tor, dir := addTorrent(t, New(Config{}), b, b.infoBytes)
	var got []int
	err := tor.Download(ctxFor(t, 2*time.Minute), DownloadOptions{
		Peers: []string{seed}, InOrder: true,
		OnPiece: func(i int, _ []byte) error { got = append(got, i); return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	sameFiles(t, b, dir)
	if len(got) != tor.npieces || !slices.IsSorted(got) {
		t.Errorf("OnPiece saw pieces %v, want 0 to %d in order", got, tor.npieces-1)
	}
}
