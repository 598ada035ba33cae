package transfer

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pp "github.com/anacrolix/torrent/peer_protocol"

	"github.com/relay-sh/relay/record"
)

// connFlooder opens idle connections to a peer: each completes the
// BitTorrent handshake for a bundle and then says nothing, reading and
// dropping what it is sent. Every period it closes them all and opens
// them again, so that none of them grows old; one the other side refused
// or closed is opened again then too. Its goroutines end with the
// test.
type connFlooder struct {
	ctx    context.Context
	wg     sync.WaitGroup
	opened atomic.Int64 // connections whose handshake was answered
}

// startConnFlood opens n connections from each of the local addresses
// hosts to addr, for ih, again every period.
func startConnFlood(t *testing.T, addr string, ih record.Infohash, hosts []string, n int, period time.Duration) *connFlooder {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &connFlooder{ctx: ctx}
	t.Cleanup(func() {
		cancel()
		f.wg.Wait()
	})
	for _, h := range hosts {
		for i := range n {
			f.wg.Go(func() { f.conn(h, addr, ih, i, period) })
		}
	}
	return f
}

// conn keeps one idle connection from host open, made again every period.
func (f *connFlooder) conn(host, addr string, ih record.Infohash, i int, period time.Duration) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(host)}}
	for f.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(f.ctx, period)
		func() {
			conn, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return
			}
			defer conn.Close()
			stop := context.AfterFunc(ctx, func() { conn.Close() })
			defer stop()
			id := [20]byte{'-', 'F', 'L', '0', '0', '0', '1', '-', 18: byte(i >> 8), 19: byte(i)}
			copy(id[8:18], host)
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			if wireHandshake(conn, ih, id) != nil {
				return
			}
			conn.SetDeadline(time.Time{})
			f.opened.Add(1)
			io.Copy(io.Discard, conn)
		}()
		// A connection refused or closed is opened again at the next
		// period.
		<-ctx.Done()
		cancel()
	}
}

// TestFetchWhileHostsFloodSeeder: hosts that hold hundreds of idle,
// handshaken connections open to a seeder, opening them again every few
// seconds, do not keep fetches from it. One host with 200 connections
// (the attack), then four hosts with 60 each: more than the
// seeder's 50 places a bundle, so the per-address bound alone would not
// leave one free. Before, no fetch got a place at the seeder. Each fetch's
// time is logged beside the time of the same fetch with no flood.
func TestFetchWhileHostsFloodSeeder(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hosts []string
		n     int
	}{
		{"one host", []string{"127.0.0.9"}, 200},
		{"four hosts", []string{"127.0.0.10", "127.0.0.11", "127.0.0.12", "127.0.0.13"}, 60},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, b := seeder(t, map[string]int64{"app": 16 << 20}, Config{})
			fetchOnce := func() time.Duration {
				t.Helper()
				l := newClient(t, Config{})
				start := time.Now()
				res, err := l.Fetch(fetchCtx(t, 60*time.Second), FetchRequest{Key: testKey(t), Release: b.Release(testTime), Peers: peersOf(s)})
				if err != nil {
					st, _ := s.Stats(b.Infohash)
					t.Fatalf("%v (the seeder has %d peers)", err, st.Peers)
				}
				checkFetched(t, b, res)
				l.Close()
				return time.Since(start)
			}
			normal := fetchOnce()
			f := startConnFlood(t, s.Addr().String(), b.Infohash, tc.hosts, tc.n, 5*time.Second)
			waitFor(t, 20*time.Second, "the flood's connections", func() bool { return f.opened.Load() >= int64(len(tc.hosts)) })
			time.Sleep(time.Second) // the flood holds what it can
			for i := range 3 {
				d := fetchOnce()
				st, _ := s.Stats(b.Infohash)
				t.Logf("fetch %d under the flood: %v (with no flood: %v); the seeder holds %d peers, the flood opened %d connections so far", i+1, d.Round(time.Millisecond), normal.Round(time.Millisecond), st.Peers, f.opened.Load())
			}
		})
	}
}

// TestNoEvictionBeforeInfo: a bundle whose info is not known yet keeps the
// connections its per-address bound would close, and the bound applies
// again once the info is in. The torrent library miscounts the pieces of a
// connection closed before the info arrives (closeConn), and dropping the
// bundle afterwards panicked in a fleet of 200 watchers.
func TestNoEvictionBeforeInfo(t *testing.T) {
	torrentEngineOnly(t, "adds a torrent to the torrent library's client")
	b, infoBytes, l, a := addWithoutInfo(t, 1<<20)
	peers := func() int {
		st, _ := l.Stats(b.Infohash)
		return st.Peers
	}
	// 30 connections from two addresses (the listener holds at most 16 from
	// one): more than half the bundle's places, and more than
	// bundleConnsPerIP from each address.
	f := startConnFlood(t, l.Addr().String(), b.Infohash, []string{"127.0.0.9", "127.0.0.11"}, 15, time.Hour)
	waitFor(t, 30*time.Second, "30 connections held", func() bool { return f.opened.Load() == 30 && peers() == 30 })
	time.Sleep(time.Second) // the evictor would have closed some by now
	if n := peers(); n != 30 {
		t.Fatalf("the bundle holds %d connections without its info, want all 30 kept", n)
	}
	if err := a.t.SetInfoBytes(infoBytes); err != nil {
		t.Fatal(err)
	}
	a.t.DownloadAll() // as a fetch does: the library takes connections only for a bundle it wants
	// With the info in, a new host's connections beyond its share are
	// closed as they come.
	startConnFlood(t, l.Addr().String(), b.Infohash, []string{"127.0.0.10"}, 2*bundleConnsPerIP, time.Hour)
	waitFor(t, 30*time.Second, "the new host's excess connections closed", func() bool {
		n := peers()
		return n > 30 && n <= 30+bundleConnsPerIP
	})
	l.Drop(b.Infohash)
}

// TestDropAfterCloseBeforeInfo: a connection closed through closeConn
// before its bundle's info is known, with the info set right after, leaves
// the bundle safe to drop. Closing it directly (pc.Close) there makes the
// torrent library's Drop panic ("piece 0 has relative availability 1")
// every time: closeConn leaves it open instead.
func TestDropAfterCloseBeforeInfo(t *testing.T) {
	torrentEngineOnly(t, "adds a torrent to the torrent library's client")
	b, infoBytes, l, a := addWithoutInfo(t, 4<<20)
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := wireHandshake(conn, b.Infohash, [20]byte{'-', 'T', 'D', '0', '0', '0', '1', '-'}); err != nil {
		t.Fatal(err)
	}
	// A peer that has two pieces, told before the info is known.
	bf := make([]bool, 64)
	bf[0], bf[1] = true, true
	if _, err := conn.Write(pp.Message{Type: pp.Bitfield, Bitfield: bf}.MustMarshalBinary()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the peer's bitfield", func() bool {
		pcs := a.t.PeerConns()
		return len(pcs) == 1 && pcs[0].PeerPieces().GetCardinality() == 2
	})
	if closeConn(a.t.PeerConns()[0]) {
		t.Fatal("closeConn closed a connection of a bundle without info")
	}
	if err := a.t.SetInfoBytes(infoBytes); err != nil {
		t.Fatal(err)
	}
	l.Drop(b.Infohash) // panicked with the connection closed
}

// addWithoutInfo makes a bundle of one file of size bytes and adds it to a
// new client by its infohash alone, as a fetch told of it does; it returns
// the info the client does not have yet.
func addWithoutInfo(t *testing.T, size int64) (*Bundle, []byte, *Client, *active) {
	t.Helper()
	b := testBundle(t, t.TempDir(), map[string]int64{"app": size})
	_, infoBytes, err := loadMetainfo(filepath.Dir(b.Dir), b.Infohash)
	if err != nil {
		t.Fatal(err)
	}
	l := newClient(t, Config{})
	a, err := l.add(b.Infohash, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b, infoBytes, l, a
}
