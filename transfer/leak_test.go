package transfer

import (
	"bytes"
	"context"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"
)

// TestNoGoroutineLeft: once its clients are closed, nothing of transfer
// (or of the torrent library, beyond a moment) keeps running, on either
// engine. It does not run in parallel, so that it counts only its own
// goroutines.
func TestNoGoroutineLeft(t *testing.T) {
	for _, e := range []Engine{EngineTorrent, EngineWire} {
		t.Run(e.String(), func(t *testing.T) { noGoroutineLeft(t, e) })
	}
}

func noGoroutineLeft(t *testing.T, e Engine) {
	before := runtime.NumGoroutine()
	func() {
		s, b := seeder(t, map[string]int64{"app": 1 << 20}, Config{Engine: e})
		l := newClient(t, Config{Engine: e})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := l.Fetch(ctx, FetchRequest{Key: testKey(t), Release: b.Release(testTime), Peers: peersOf(s)}); err != nil {
			t.Fatal(err)
		}
		// A fetch cancelled while it waits for peers.
		r := b.Release(testTime)
		r.Infohash[0] ^= 1
		ctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel2()
		if _, err := l.Fetch(ctx2, FetchRequest{Key: testKey(t), Release: r}); err == nil {
			t.Fatal("fetched a bundle nobody has")
		}
		l.Close()
		s.Close()
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var buf bytes.Buffer
		pprof.Lookup("goroutine").WriteTo(&buf, 1)
		ours := strings.Contains(buf.String(), "relay/transfer.(*Client)") || strings.Contains(buf.String(), "relay/transfer.(*fetch)") || strings.Contains(buf.String(), "relay/transfer.(*wire")
		n := runtime.NumGoroutine()
		if n <= before && !ours {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines before, %d after closing:\n%s", before, n, buf.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestWireCloseKeptConns: the connection the wire engine's info fetch
// keeps for a download (peerwire parks it for 30 s) closes with the
// Client, not after.
func TestWireCloseKeptConns(t *testing.T) {
	t.Parallel()
	s, b := seeder(t, map[string]int64{"app": 1 << 20}, Config{Engine: EngineWire})
	l := newClient(t, Config{Engine: EngineWire})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := l.w.pw.FetchInfo(ctx, metainfo.Hash(b.Infohash), []string{s.Addr().String()}, nil); err != nil {
		t.Fatal(err)
	}
	peers := func() int { st, _ := s.Stats(b.Infohash); return st.Peers }
	waitFor(t, time.Minute, "the info fetch's connection at the seeder", func() bool { return peers() == 1 })
	l.Close()
	// Well within the 30 s a parked connection waits for a download.
	waitFor(t, 20*time.Second, "the connection closed with the client", func() bool { return peers() == 0 })
}
