package transfer

import (
	"context"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/anacrolix/torrent"

	"github.com/relay-sh/relay/record"
)

// TestFetchAmongCorruptSeeder: a seeder that serves corrupt pieces (its
// file changed under it and it never rechecks, so it offers the pieces as
// valid) is one of two seeders; the download completes from the honest
// one, and every fetched file is the genuine one.
func TestFetchAmongCorruptSeeder(t *testing.T) {
	torrentEngineOnly(t, "looks at the torrent library's torrent")
	t.Parallel()
	// One file: testBundle draws file contents in map order.
	files := map[string]int64{"app": 4 << 20}
	honest, b := seeder(t, files, Config{})
	// The liar has an address of its own: the torrent library bans a
	// peer that sent a bad piece by IP address, and on one shared address
	// it would ban the honest seeder with it (see below).
	// It serves a copy of the honest seeder's bundle folder (which it
	// verifies in full before serving, as it did not write it).
	liarDir := t.TempDir()
	copyTree(t, filepath.Join(BundlesDir(honest.cfg.DataDir), b.Infohash.String()), filepath.Join(BundlesDir(liarDir), b.Infohash.String()))
	liar := newClient(t, Config{DataDir: liarDir, Recheck: -1, Listen: "127.0.0.2:0"})
	lb, err := liar.Seed(context.Background(), b.Infohash)
	if err != nil {
		t.Fatal(err)
	}
	// Every piece of app is corrupted on the liar's disk.
	for off := int64(0); off < 4<<20; off += b.PieceLength {
		modify(t, filepath.Join(lb.Dir, "app"), off+7)
	}
	l := newClient(t, Config{})
	var res *Fetched
	res, err = l.Fetch(fetchCtx(t, 60*time.Second), FetchRequest{Key: testKey(t), Release: b.Release(testTime), Peers: peersOf(liar, honest)})
	if err != nil {
		t.Fatal(err)
	}
	checkFetched(t, b, res)
	st, _ := liar.Stats(b.Infohash)
	banned := l.Banned()
	t.Logf("the corrupt seeder sent %d bytes; banned: %v", st.Uploaded, banned)
	// The fetcher hashes pieces as they arrive (the torrent library's
	// smart banning is off then): relay's own finds the liar, and only it.
	if !slices.Equal(banned, []string{"127.0.0.2"}) {
		t.Errorf("banned %v, want the corrupt seeder 127.0.0.2 alone", banned)
	}
	// Bad pieces came in mid-stream, and the file's SHA-256, computed
	// as the blocks arrived, rewound past each (the fetch checked it
	// against the manifest).
	if pc := l.store.check(b.Infohash); pc != nil {
		st := pc.hasher.Stats()
		t.Logf("pieces failed: %d; read back %d bytes for pieces, %d for the file", st.Failed, st.ReadBack, pc.fileRead.Load())
		if st.Failed == 0 {
			t.Error("no piece failed its check: the corrupt seeder's blocks never came")
		}
	}
}

// copyTree copies the files under src to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestFetchAmongFloodingPeer: a hostile peer, written on the wire
// protocol, says it has the whole bundle, unchokes the fetcher and then
// sends more than it was asked for; an honest seeder serves the bundle
// too. The fetch completes in time with the genuine bytes, no garbage is
// ever written (no piece fails its hash), and the fetcher cuts the
// hostile connection long before the flood could fill its memory.
func TestFetchAmongFloodingPeer(t *testing.T) {
	torrentEngineOnly(t, "looks at the torrent library's torrent")
	t.Parallel()
	const limit = 64 << 20 // what a hostile connection may push at most
	for _, tc := range []struct {
		name  string
		flood func(*floodConn) error
	}{
		{"unrequested blocks", floodUnrequested},
		{"1 MiB piece for a 16 KiB request", floodOversized(1 << 20)},
		{"32 KiB piece for a 16 KiB request", floodOversized(32 << 10)},
		{"4 GiB message", floodEndless},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// The honest seeder is slow enough (about two seconds) for
			// the fetcher to ask the hostile peer for blocks too.
			honest, b := seeder(t, map[string]int64{"app": 4 << 20}, Config{UploadRate: 2 << 20})
			h := startHostilePeer(t, "127.0.0.2", b, limit, tc.flood)
			l := newClient(t, Config{})
			start := time.Now()
			res, err := l.Fetch(fetchCtx(t, 15*time.Second), FetchRequest{Key: testKey(t), Release: b.Release(testTime),
				Peers: append(peersOf(honest), netip.MustParseAddrPort(h.ln.Addr().String()))})
			if err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			checkFetched(t, b, res)
			st := torrentOf(l, b.Infohash).Stats()
			if bad := st.PiecesDirtiedBad.Int64(); bad != 0 {
				t.Errorf("%d pieces failed their hash: garbage was written", bad)
			}
			// What the two kernels' socket buffers hold counts as
			// pushed: a few MiB on loopback.
			for i, r := range h.results(t, 10*time.Second) {
				t.Logf("hostile connection %d: pushed %d bytes, cut by the fetcher: %v (%v)", i, r.pushed, r.cut, r.err)
				if !r.cut {
					t.Errorf("the fetcher did not cut hostile connection %d (%v) after %d bytes", i, r.err, r.pushed)
				}
				if r.pushed >= 16<<20 {
					t.Errorf("hostile connection %d pushed %d bytes before the fetcher cut it", i, r.pushed)
				}
			}
			t.Logf("fetched in %v; data read %d bytes (bundle %d), chunks wasted %d; banned: %v",
				took, st.BytesReadData.Int64(), b.Size, st.ChunksReadWasted.Int64(), l.cl.BadPeerIPs())
		})
	}
}

// TestFetchAmongPieceCountFlood: while a fetch waits for the bundle's
// info, hostile peers (eight connections, each with a peer ID of its own)
// claim pieces far beyond any bundle's: a bitfield as long as a message
// may be and "have" messages for pieces 2^24 and 2^32-1. The fetcher's
// memory does not grow with the piece numbers they claim, and once an
// honest seeder connects the fetch completes with the genuine bytes. It
// does not run in parallel, so that the heap it measures is its own.
func TestFetchAmongPieceCountFlood(t *testing.T) {
	torrentEngineOnly(t, "looks at the torrent library's torrent")
	const conns = 8
	honest, b := seeder(t, map[string]int64{"app": 1 << 20}, Config{})
	h := startHostilePeer(t, "127.0.0.3", b, 1<<20, floodPieceCounts)
	l := newClient(t, Config{})
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	type result struct {
		res *Fetched
		err error
	}
	done := make(chan result, 1)
	ctx := fetchCtx(t, 3*time.Minute) // a bound on a hang, not a speed: -race on a loaded machine
	go func() {
		res, err := l.Fetch(ctx, FetchRequest{Key: testKey(t), Release: b.Release(testTime),
			Peers: []netip.AddrPort{netip.MustParseAddrPort(h.ln.Addr().String())}})
		done <- result{res, err}
	}()
	// The fetcher dials the hostile peer; the hostile peer dials the
	// fetcher for the other connections.
	waitFor(t, 60*time.Second, "the fetcher to connect to the hostile peer", func() bool { return h.held() == 1 })
	for range conns - 1 {
		h.dial(t, l.Addr().String())
	}
	waitFor(t, 60*time.Second, "every hostile connection to flood", func() bool { return h.held() == conns })
	waitFor(t, 60*time.Second, "the fetcher to take every hostile connection", func() bool {
		st, _ := l.Stats(b.Infohash)
		return st.Peers == conns
	})
	var grown uint64
	for range 5 {
		time.Sleep(100 * time.Millisecond)
		if n := heap(); n > before {
			grown = max(grown, n-before)
		}
	}
	t.Logf("heap grew by %d KiB while %d connections claimed 2^32 pieces", grown>>10, conns)
	if grown > 32<<20 {
		t.Errorf("the fetcher's heap grew by %d MiB while hostile peers claimed pieces beyond the bundle", grown>>20)
	}
	if st, _ := l.Stats(b.Infohash); st.Peers != conns {
		t.Errorf("the fetcher has %d peers after the measure, want the %d hostile connections", st.Peers, conns)
	}

	honest.addPeers(torrentOf(honest, b.Infohash), []netip.AddrPort{l.Addr()}, torrent.PeerSourceDirect)
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	checkFetched(t, b, r.res)
}

// torrentOf returns the torrent of a bundle the client holds.
func torrentOf(c *Client, ih record.Infohash) *torrent.Torrent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bundles[ih].t
}
