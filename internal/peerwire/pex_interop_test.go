package peerwire

import (
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
)

// anacrolixPeer runs a client of the torrent library (anacrolixConfig)
// that downloads b into a folder of its own
// from the peer at addr, until the test ends, and returns it and its
// address.
func anacrolixPeer(t *testing.T, b *bundle, addr string) (*torrent.Client, string) {
	t.Helper()
	cl, err := torrent.NewClient(anacrolixConfig(t.TempDir()))
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
