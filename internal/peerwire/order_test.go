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

// TestInOrderPartialSeeds: with InOrder and room for two pieces, a peer
// that has only the second half comes first and one with the first half
// later; the pieces of the second half that verified wait for the first,
// and leave it room: the download completes, in order.
func TestInOrderPartialSeeds(t *testing.T) {
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 1 << 20}, 64<<10)
	n := len(b.info.Pieces) / 20
	half := func(first bool) string { return halfSeed(t, b, n, first) }
	second, first := half(false), half(true)
	tor, dir := addTorrent(t, New(Config{InFlight: 1}), b, b.infoBytes)
	ctx := ctxFor(t, time.Minute)
	more := make(chan string, 1)
	go func() {
		// The first half's peer once a piece of the second half verified
		// and waits: without the place kept, the second half's would
		// take every place before it comes.
		for {
			tor.mu.Lock()
			waits := tor.dl != nil && slices.ContainsFunc(tor.dl.active, func(pc *piece) bool { return pc.written })
			tor.mu.Unlock()
			if waits || ctx.Err() != nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(500 * time.Millisecond)
		more <- first
	}()
	var got []int
	err := tor.Download(ctx, DownloadOptions{
		Peers: []string{second}, MorePeers: more, InOrder: true,
		OnPiece: func(i int, _ []byte) error { got = append(got, i); return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	sameFiles(t, b, dir)
	if len(got) != n || !slices.IsSorted(got) {
		t.Errorf("OnPiece saw pieces %v, want 0 to %d in order", got, n-1)
	}
}
