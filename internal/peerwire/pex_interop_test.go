package peerwire

import (
	"context"
	"net"
	"os"
	"os/exec"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"

	"github.com/relay-sh/relay/dht/localnet"
)

// anacrolixPeer runs a client of the torrent library (anacrolixConfig)
// that downloads b into a folder of its own
// from the peer at addr, until the test ends, and returns it and its
// address.
func anacrolixPeer(t *testing.T, b *bundle, addr string) (*torrent.Client, string) {
	t.Helper()
	return anacrolixPeerWith(t, b, addr, anacrolixConfig(t.TempDir()))
}

// anacrolixPeerWith is anacrolixPeer with the client configured by cfg.
func anacrolixPeerWith(t *testing.T, b *bundle, addr string, cfg *torrent.ClientConfig) (*torrent.Client, string) {
	t.Helper()
	cl, err := torrent.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	tt, err := cl.AddTorrent(&metainfo.MetaInfo{InfoBytes: b.infoBytes})
	if err != nil {
		t.Fatal(err)
	}
	tt.DownloadAll()
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	tt.AddPeers([]torrent.PeerInfo{{Addr: ta}})
	return cl, cl.ListenAddrs()[0].String()
}

// connectedFrom reports whether a peer of peer id id is connected to t.
func connectedFrom(t *Torrent, id [20]byte) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for p := range t.peers {
		if p.id == id {
			return true
		}
	}
	return false
}

// TestPEXToAnacrolix: the torrent library's client, given only a seed of
// this package (serving at 16 KiB/s), learns from the seed's ut_pex
// message of a second client of this package (downloading from the seed,
// and serving) and connects to it.
func TestPEXToAnacrolix(t *testing.T) {
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 1 << 20}, 64<<10)
	n := len(b.info.Pieces) / 20
	_, seedTor, seed := seeded(t, b, Config{UploadRate: 16 << 10})
	_, second, _, secondAddr := serving(t, b, Config{}, func(i int) bool { return i >= n/2 }, new(atomic.Int64))
	downloadInBackground(t, second, DownloadOptions{Peers: []string{seed}})
	waitFor(t, time.Minute, "second client's address at the seed", func() bool {
		return slices.Contains(pexListens(seedTor), secondAddr)
	})
	cl, _ := anacrolixPeer(t, b, seed)
	waitFor(t, time.Minute, "connection of the torrent library's client at the second", func() bool {
		return connectedFrom(second, cl.PeerID())
	})
}

// TestPEXFromAnacrolix: a download of this package, given only a client of
// the torrent library (a leecher of a seed of this package serving at 16
// KiB/s), learns the seed's address from that client's ut_pex message and
// connects to it.
func TestPEXFromAnacrolix(t *testing.T) {
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 1 << 20}, 64<<10)
	_, seedTor, seed := seeded(t, b, Config{UploadRate: 16 << 10})
	cl, clAddr := anacrolixPeer(t, b, seed)
	waitFor(t, time.Minute, "the torrent library's client at the seed", func() bool {
		return connectedFrom(seedTor, cl.PeerID())
	})
	var mu sync.Mutex
	var learnt []string
	leech := New(Config{})
	tor, _ := addTorrent(t, leech, b, b.infoBytes)
	downloadInBackground(t, tor, DownloadOptions{Peers: []string{clAddr}, OnPEXPeer: func(a string) {
		mu.Lock()
		defer mu.Unlock()
		learnt = append(learnt, a)
	}})
	waitFor(t, time.Minute, "connection of the leecher at the seed", func() bool {
		return connectedFrom(seedTor, leech.PeerID())
	})
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(learnt, []string{seed}) {
		t.Errorf("learnt %v by PEX, want the seed's %s", learnt, seed)
	}
}

// connectInBackground runs tor.Connect to addr until the test ends.
func connectInBackground(t *testing.T, tor *Torrent, addr string) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); tor.Connect(ctx, addr) }()
	t.Cleanup(func() { cancel(); <-done })
}

// TestPEXFromLibtorrent: a download of this package, given only a
// libtorrent seeder, learns from libtorrent's ut_pex message of a second
// client of this package (which holds half the pieces, serves, and is
// connected to the seeder) and connects to it.
func TestPEXFromLibtorrent(t *testing.T) {
	py := needLibtorrent(t)
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 1 << 20}, 64<<10)
	n := len(b.info.Pieces) / 20
	seed := libtorrentSeeds(t, py, b)
	_, secondTor, _, secondAddr := serving(t, b, Config{}, func(i int) bool { return i < n/2 }, new(atomic.Int64))
	connectInBackground(t, secondTor, seed)
	waitFor(t, time.Minute, "the second client connected to libtorrent", func() bool { return secondTor.Stats().Peers == 1 })

	var mu sync.Mutex
	var learnt []string
	leech := New(Config{})
	tor, dir := addTorrent(t, leech, b, b.infoBytes)
	// The download, which libtorrent alone would end in a moment, waits
	// in its first piece until the leecher is connected to the second
	// client (libtorrent sends its first ut_pex message about a second
	// after the connection).
	var reached atomic.Bool
	var once sync.Once
	err := tor.Download(ctxFor(t, 2*time.Minute), DownloadOptions{
		Peers: []string{seed},
		OnPEXPeer: func(a string) {
			mu.Lock()
			defer mu.Unlock()
			learnt = append(learnt, a)
		},
		OnPiece: func(int, []byte) error {
			once.Do(func() {
				for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline) && !reached.Load(); time.Sleep(20 * time.Millisecond) {
					reached.Store(connectedFrom(secondTor, leech.PeerID()))
				}
			})
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	sameFiles(t, b, dir)
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(learnt, secondAddr) || !reached.Load() {
		t.Errorf("learnt %v by PEX (want the second client's %s), connected to it: %v", learnt, secondAddr, reached.Load())
	}
}

// TestPEXToLibtorrent: libtorrent, given only a seed of this package
// (serving at 16 KiB/s), learns from the seed's ut_pex message of a
// second client of this package (which holds half the pieces, serves, and
// is connected to the seed) and connects to it.
func TestPEXToLibtorrent(t *testing.T) {
	py := needLibtorrent(t)
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 1 << 20}, 64<<10)
	n := len(b.info.Pieces) / 20
	_, seedTor, seed := seeded(t, b, Config{UploadRate: 16 << 10})
	_, secondTor, _, secondAddr := serving(t, b, Config{}, func(i int) bool { return i < n/2 }, new(atomic.Int64))
	connectInBackground(t, secondTor, seed)
	waitFor(t, time.Minute, "second client's address at the seed", func() bool {
		return slices.Contains(pexListens(seedTor), secondAddr)
	})
	ln := localnet.ForTest(t, localnet.Config{Nodes: 2})
	cmd := exec.CommandContext(ctxFor(t, 2*time.Minute), py, ltScript, "fetch", ln.Bootstrap.Addr().String(), b.Magnet(), t.TempDir(), seed)
	cmd.Env = append(os.Environ(), "LT_TCP=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, time.Minute, "libtorrent's connection at the second client", func() bool {
		secondTor.mu.Lock()
		defer secondTor.mu.Unlock()
		for p := range secondTor.peers {
			if string(p.id[:3]) == "-LT" {
				return true
			}
		}
		return false
	})
}
