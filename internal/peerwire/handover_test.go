package peerwire

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pp "github.com/anacrolix/torrent/peer_protocol"
)

// acceptCounter counts the connections a listener accepted.
type acceptCounter struct {
	net.Listener
	n *atomic.Int64
}

func (l acceptCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// countingDialer is a Config.Dial over TCP that counts its dials.
func countingDialer(n *atomic.Int64) func(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	return func(ctx context.Context, addr string) (net.Conn, error) {
		n.Add(1)
		return d.DialContext(ctx, "tcp", addr)
	}
}

// TestFetchInfoConnectionKept: the download that follows FetchInfo takes
// over the connection that brought the info: a seed of this package
// accepts one connection, and the torrent library's seeder, which
// refuses a second connection of one peer id while it holds the first,
// is dialled once.
func TestFetchInfoConnectionKept(t *testing.T) {
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 1<<20 + 5, "etc/conf": 3000}, 64<<10)
	// fetch fetches b's info from seed and then its files, and returns
	// how many times it dialled.
	fetch := func(t *testing.T, seed string) int64 {
		var dials atomic.Int64
		c := New(Config{Dial: countingDialer(&dials)})
		ctx := ctxFor(t, 2*time.Minute)
		tor, dir := leecher(t, ctx, c, b, seed)
		if err := tor.Download(ctx, DownloadOptions{Peers: []string{seed}}); err != nil {
			t.Fatal(err)
		}
		sameFiles(t, b, dir)
		return dials.Load()
	}
	t.Run("peerwire", func(t *testing.T) {
		t.Parallel()
		s, _ := seedClient(t, b, Config{})
		var accepted atomic.Int64
		seed := serveWrapped(t, s, func(ln net.Listener) net.Listener { return acceptCounter{ln, &accepted} })
		if dials := fetch(t, seed); accepted.Load() != 1 || dials != 1 {
			t.Errorf("FetchInfo and Download: the seed accepted %d connections, the leecher dialled %d times; want 1 and 1", accepted.Load(), dials)
		}
	})
	t.Run("anacrolix", func(t *testing.T) {
		t.Parallel()
		if n := fetch(t, anacrolixSeeds(t, b)); n != 1 {
			t.Errorf("FetchInfo and Download dialled the seeder %d times, want 1", n)
		}
	})
}

// parkingFetcher returns a bundle seeded by a client of this package (its
// torrent and address), and a client whose FetchInfo parks connections
// for an hour, with a context of 2 minutes.
func parkingFetcher(t *testing.T) (*bundle, *Torrent, string, *Client, context.Context) {
	t.Helper()
	b := makeBundle(t, map[string]int64{"app": 100 << 10}, 64<<10)
	_, seedTor, seed := seeded(t, b, Config{})
	c := New(Config{})
	c.parkFor = time.Hour
	return b, seedTor, seed, c, ctxFor(t, 2*time.Minute)
}

// TestFetchInfoConnectionNotTaken: FetchInfo's connection, which no
// download takes, closes after parkFor; a second FetchInfo of the same
// infohash closes the first's.
func TestFetchInfoConnectionNotTaken(t *testing.T) {
	t.Parallel()
	b, seedTor, seed, c, ctx := parkingFetcher(t)
	for range 2 {
		if _, err := c.FetchInfo(ctx, b.info2hash(), []string{seed}, nil); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, time.Minute, "one connection at the seed", func() bool { return seedTor.Stats().Peers == 1 })
	if a := c.parkedAddrs(b.info2hash()); len(a) != 1 {
		t.Errorf("parked after two FetchInfo: %v, want the seed's one", a)
	}

	c2 := New(Config{})
	c2.parkFor = 100 * time.Millisecond
	if _, err := c2.FetchInfo(ctx, b.info2hash(), []string{seed}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the parked connection closed", func() bool {
		return seedTor.Stats().Peers == 1 && len(c2.parkedAddrs(b.info2hash())) == 0
	})
}

// BenchmarkFirstPieceAfterFetchInfo times, on 127.0.0.1, from FetchInfo's
// return to the first piece of the download that follows, with
// FetchInfo's connection taken over (kept) and closed so that the
// download dials again (redialled), from a seed of this package and from
// the torrent library's seeder.
func BenchmarkFirstPieceAfterFetchInfo(b *testing.B) {
	bu := makeBundle(b, map[string]int64{"app": 4 << 20}, 256<<10)
	_, _, seed := seeded(b, bu, Config{})
	seeds := map[string]string{"peerwire": seed, "anacrolix": anacrolixSeeds(b, bu)}
	for _, seeder := range []string{"peerwire", "anacrolix"} {
		for _, kept := range []bool{true, false} {
			name := seeder + "/kept"
			if !kept {
				name = seeder + "/redialled"
			}
			b.Run(name, func(b *testing.B) {
				var total time.Duration
				for range b.N {
					c := New(Config{})
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					info, err := c.FetchInfo(ctx, bu.info2hash(), []string{seeds[seeder]}, nil)
					if err != nil {
						b.Fatal(err)
					}
					start := time.Now()
					if !kept {
						c.closeParked(bu.info2hash())
					}
					dst, err := CreateFiles(b.TempDir(), bu.info)
					if err != nil {
						b.Fatal(err)
					}
					tor, err := c.Add(info, dst, TorrentOptions{})
					if err != nil {
						b.Fatal(err)
					}
					first := errors.New("first piece")
					err = tor.Download(ctx, DownloadOptions{Peers: []string{seeds[seeder]}, OnPiece: func(int, []byte) error {
						total += time.Since(start)
						return first
					}})
					cancel()
					if err != first {
						b.Fatal(err)
					}
					c.Remove(tor)
					dst.Close()
				}
				b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "ms/first-piece")
			})
		}
	}
}

// TestHandoverHostile: a peer that sends more than maxReplay bytes of
// haves before the info is not parked; one that sent a have of a piece
// past the last is parked, and cut off when the torrent takes its
// connection over and replays the have; the download then completes
// from an honest seed.
func TestHandoverHostile(t *testing.T) {
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 1 << 20}, 64<<10)
	n := len(b.info.Pieces) / 20
	var haves []byte
	for range maxReplay/5 + 1 {
		haves = appendMsg(haves, pp.Have, 0)
	}
	t.Run("too much to replay", func(t *testing.T) {
		t.Parallel()
		h := hostilePeer(t, b, true, metadataPeer(len(b.infoBytes), b.infoBytes, haves))
		c := New(Config{})
		if _, err := c.FetchInfo(ctxFor(t, time.Minute), b.info2hash(), []string{h.addr}, nil); err != nil {
			t.Fatal(err)
		}
		if a := c.parkedAddrs(b.info2hash()); len(a) > 0 {
			t.Errorf("parked %v", a)
		}
		waitFor(t, time.Minute, "connection cut", func() bool { return h.cut.Load() == 1 })
	})
	t.Run("have past the last piece", func(t *testing.T) {
		t.Parallel()
		h := hostilePeer(t, b, true, metadataPeer(len(b.infoBytes), b.infoBytes, appendMsg(nil, pp.Have, uint32(n+5))))
		_, _, seed := seeded(t, b, Config{})
		c := New(Config{})
		ctx := ctxFor(t, 2*time.Minute)
		info, err := c.FetchInfo(ctx, b.info2hash(), []string{h.addr}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if a := c.parkedAddrs(b.info2hash()); len(a) != 1 {
			t.Fatalf("parked %v, want the peer's connection", a)
		}
		tor, dir := addTorrent(t, c, b, info)
		if err := tor.Connect(ctx, h.addr); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("have of piece %d", n+5)) {
			t.Errorf("the parked connection ended with %v, want its have refused", err)
		}
		if h.conns.Load() != 1 {
			t.Errorf("the peer was dialled %d times, want once (by FetchInfo)", h.conns.Load())
		}
		if err := tor.Download(ctx, DownloadOptions{Peers: []string{seed}}); err != nil {
			t.Fatal(err)
		}
		sameFiles(t, b, dir)
	})
}
