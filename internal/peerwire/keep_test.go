package peerwire

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestDownloadKeep: with DownloadOptions.Keep, the connection a complete
// download dialled stays up after it returns, on both sides, until Keep
// ends; a download that fails closes it, Keep or not; without Keep, it is
// closed when the download returns.
func TestDownloadKeep(t *testing.T) {
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 512<<10 + 3}, 64<<10)
	_, seed, addr := seeded(t, b, Config{})
	ctx := ctxFor(t, time.Minute)

	tor, _ := addTorrent(t, New(Config{}), b, b.infoBytes)
	keep, end := context.WithCancel(ctx)
	defer end()
	if err := tor.Download(ctx, DownloadOptions{Peers: []string{addr}, Keep: keep}); err != nil {
		t.Fatal(err)
	}
	if st := tor.Stats(); st.Peers != 1 || st.Pieces != st.Total {
		t.Fatalf("after a download with Keep: %+v, want every piece and the seeder still connected", st)
	}
	waitPeers := func(what string, tor *Torrent, n int) {
		t.Helper()
		for tor.Stats().Peers != n {
			if ctx.Err() != nil {
				t.Fatalf("%s: %d peers connected, want %d", what, tor.Stats().Peers, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitPeers("the seeder after a download with Keep", seed, 1)
	end()
	waitPeers("the leecher after Keep ended", tor, 0)
	waitPeers("the seeder after Keep ended", seed, 0)

	failed, _ := addTorrent(t, New(Config{}), b, b.infoBytes)
	stop := errors.New("stop")
	keep2, end2 := context.WithCancel(ctx)
	defer end2()
	err := failed.Download(ctx, DownloadOptions{Peers: []string{addr}, Keep: keep2, OnPiece: func(int, []byte) error { return stop }})
	if !errors.Is(err, stop) {
		t.Fatalf("a download whose OnPiece fails returned %v, want its error", err)
	}
	if st := failed.Stats(); st.Peers != 0 {
		t.Errorf("after a failed download with Keep: %d peers connected, want none", st.Peers)
	}

	tor2, _ := addTorrent(t, New(Config{}), b, b.infoBytes)
	if err := tor2.Download(ctx, DownloadOptions{Peers: []string{addr}}); err != nil {
		t.Fatal(err)
	}
	if st := tor2.Stats(); st.Peers != 0 {
		t.Errorf("after a download without Keep: %d peers connected, want none", st.Peers)
	}
}
