package peerwire

import (
	"errors"
	"testing"
	"time"
)

// TestClientClose: Close closes the connections FetchInfo kept for a
// download (parked for an hour here) and a torrent's connections, and
// the client refuses new work after it.
func TestClientClose(t *testing.T) {
	t.Parallel()
	b, seedTor, seed, c, ctx := parkingFetcher(t)
	info, err := c.FetchInfo(ctx, b.info2hash(), []string{seed}, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "FetchInfo's connection at the seed", func() bool { return seedTor.Stats().Peers == 1 })

	// A second torrent's connection to the seed, run by Connect.
	b2 := makeBundle(t, map[string]int64{"lib": 70 << 10}, 32<<10)
	_, seedTor2, seed2 := seeded(t, b2, Config{})
	t2, _ := addTorrent(t, c, b2, b2.infoBytes)
	connected := make(chan error, 1)
	go func() { connected <- t2.Connect(ctx, seed2) }()
	waitFor(t, time.Minute, "Connect's connection at the second seed", func() bool { return seedTor2.Stats().Peers == 1 })

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the seeds' connections closed", func() bool {
		return seedTor.Stats().Peers == 0 && seedTor2.Stats().Peers == 0
	})
	select {
	case <-connected:
	case <-ctx.Done():
		t.Fatal("Connect did not return after Close")
	}
	if a := c.parkedAddrs(b.info2hash()); len(a) != 0 {
		t.Errorf("parked after Close: %v", a)
	}

	if _, err := c.FetchInfo(ctx, b.info2hash(), []string{seed}, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("FetchInfo after Close: %v, want %v", err, ErrClosed)
	}
	files, err := CreateFiles(t.TempDir(), b.info)
	if err != nil {
		t.Fatal(err)
	}
	defer files.Close()
	if _, err := c.Add(info, files, TorrentOptions{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after Close: %v, want %v", err, ErrClosed)
	}
	if err := t2.Connect(ctx, seed2); !errors.Is(err, ErrClosed) {
		t.Errorf("Connect after Close: %v, want %v", err, ErrClosed)
	}
	if n := seedTor.Stats().Peers + seedTor2.Stats().Peers; n != 0 {
		t.Errorf("%d connections at the seeds after work refused", n)
	}
}
