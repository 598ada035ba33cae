package peerwire

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	pp "github.com/anacrolix/torrent/peer_protocol"
)

// TestUploadRate: a leecher of a client that serves at most 1 MiB/s takes
// at least the time that rate allows (beyond a first second's burst).
func TestUploadRate(t *testing.T) {
	t.Parallel()
	const rate = 1 << 20
	b := makeBundle(t, map[string]int64{"app": 3 << 20}, 64<<10)
	_, seed, addr := seeded(t, b, Config{UploadRate: rate})
	ctx := ctxFor(t, 2*time.Minute)
	tor, dir := addTorrent(t, New(Config{}), b, b.infoBytes)
	start := time.Now()
	if err := tor.Download(ctx, DownloadOptions{Peers: []string{addr}}); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	sameFiles(t, b, dir)
	if least := time.Duration(float64(b.Size-rate) / rate * float64(time.Second)); took < least {
		t.Errorf("%d bytes in %v at most %d B/s: want at least %v", b.Size, took, rate, least)
	}
	if st := seed.Stats(); st.Uploaded < b.Size || st.Downloaded != 0 {
		t.Errorf("the seed's stats %+v: want all %d bytes uploaded, nothing downloaded", st, b.Size)
	}
}

// TestServeLimits: with one upload slot, two leechers both finish (the
// first that is done hands its slot on), and a connection beyond
// Config.MaxConns is closed after its handshake.
func TestServeLimits(t *testing.T) {
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 1 << 20}, 64<<10)
	_, tor, addr := seeded(t, b, Config{UploadSlots: 1, MaxConns: 2})
	ctx := ctxFor(t, 2*time.Minute)
	var wg sync.WaitGroup
	for range 2 {
		l, dir := addTorrent(t, New(Config{}), b, b.infoBytes)
		wg.Go(func() {
			if err := l.Download(ctx, DownloadOptions{Peers: []string{addr}}); err != nil {
				t.Error(err)
				return
			}
			sameFiles(t, b, dir)
		})
	}
	wg.Wait()

	// Two idle connections take the two places; a third is refused.
	hold := func() net.Conn {
		conn := sendHandshake(t, addr, b)
		conn.SetReadDeadline(time.Now().Add(time.Minute))
		if _, err := readHandshake(conn); err != nil {
			t.Fatalf("handshake: %v", err)
		}
		return conn
	}
	hold()
	hold()
	for tor.Stats().Peers < 2 {
		if ctx.Err() != nil {
			t.Fatal("the two connections were not taken")
		}
		time.Sleep(10 * time.Millisecond)
	}
	third := hold()
	buf := make([]byte, 1<<10)
	for {
		if _, err := third.Read(buf); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("the connection beyond MaxConns was not closed")
			}
			break
		}
	}
}

// TestPartialSeeds: two clients that each have half the pieces (one the
// first half, the other the second) serve them; a download from both
// completes.
func TestPartialSeeds(t *testing.T) {
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 2<<20 + 100, "b": 50 << 10}, 64<<10)
	n := len(b.info.Pieces) / 20
	half := func(first bool) string { return halfSeed(t, b, n, first) }
	a, z := half(true), half(false)
	tor, dir := addTorrent(t, New(Config{}), b, b.infoBytes)
	if err := tor.Download(ctxFor(t, 2*time.Minute), DownloadOptions{Peers: []string{a, z}}); err != nil {
		t.Fatal(err)
	}
	sameFiles(t, b, dir)
}

// TestNoGoroutineLeft: once a download returned and Serve's context
// ended, no goroutine of the package is left. Not parallel: the other
// tests wait while it runs.
func TestNoGoroutineLeft(t *testing.T) {
	b := makeBundle(t, map[string]int64{"app": 1 << 20}, 64<<10)
	files, err := OpenFiles(b.root, b.info)
	if err != nil {
		t.Fatal(err)
	}
	defer files.Close()
	s := New(Config{})
	if _, err := s.Add(b.infoBytes, files, TorrentOptions{Have: func(int) bool { return true }}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctxFor(t, time.Minute))
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	tor, _ := leecher(t, ctx, New(Config{}), b, ln.Addr().String())
	if err := tor.Download(ctx, DownloadOptions{Peers: []string{ln.Addr().String()}}); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		var left []string
		for _, g := range strings.Split(stacks, "\n\n") {
			// Methods of the package's types: the tests' own goroutines are
			// functions.
			if strings.Contains(g, "internal/peerwire.(") {
				left = append(left, g)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestIdleTimeout: a peer that sends nothing is cut off after
// Config.IdleTimeout; one that sends keep-alives is not, and is sent
// keep-alives.
func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 100 << 10}, 64<<10)
	_, _, addr := seeded(t, b, Config{IdleTimeout: 3 * time.Second})
	open := func() net.Conn {
		conn := sendHandshake(t, addr, b)
		return conn
	}
	// Before the handshake: the idle time counts from the seeder's read
	// after it.
	start := time.Now()
	silent, talker := open(), open()
	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				if _, err := talker.Write(keepAlive); err != nil {
					return
				}
			}
		}
	}()
	silent.SetReadDeadline(time.Now().Add(time.Minute))
	if _, err := io.Copy(io.Discard, silent); err != nil {
		t.Fatalf("the silent peer was not cut off: %v", err)
	}
	if took := time.Since(start); took < 3*time.Second {
		t.Errorf("the silent peer was cut off after %v, before the idle timeout", took)
	}
	// The talker is still connected, and was sent keep-alives: its
	// stream holds a keep-alive (four zero bytes) after its handshake,
	// bitfield and extended handshake.
	talker.SetReadDeadline(time.Now().Add(time.Second))
	got, err := io.ReadAll(talker)
	close(stop)
	<-sent
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("the peer that sent keep-alives: %v, want it still connected", err)
	}
	if !bytes.Contains(got[handshakeLen:], keepAlive) {
		t.Errorf("no keep-alive among the %d bytes sent to the peer", len(got))
	}
}

// TestSlotIdle: with one upload slot, taken by a peer that is unchoked
// and requests nothing, a leecher that comes later gets the slot after
// Config.SlotIdle and downloads.
func TestSlotIdle(t *testing.T) {
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 300 << 10}, 64<<10)
	_, _, addr := seeded(t, b, Config{UploadSlots: 1, SlotIdle: 500 * time.Millisecond})
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	h := handshake{reserved: ourReserved(), infohash: b.info2hash()}
	h.peerID[0] = 1
	idle.Write(append(h.marshal(), appendMsg(nil, pp.Interested)...))
	// Until it is unchoked: then it holds the slot.
	r := bufio.NewReader(idle)
	idle.SetReadDeadline(time.Now().Add(time.Minute))
	if _, err := readHandshake(r); err != nil {
		t.Fatal(err)
	}
	for {
		typ, n, err := readHeader(r, len(b.info.Pieces)/20)
		if err != nil {
			t.Fatalf("the first peer was not unchoked: %v", err)
		}
		if n > 0 {
			r.Discard(n)
		}
		if n >= 0 && typ == pp.Unchoke {
			break
		}
	}
	go io.Copy(io.Discard, r)
	tor, dir := addTorrent(t, New(Config{}), b, b.infoBytes)
	if err := tor.Download(ctxFor(t, time.Minute), DownloadOptions{Peers: []string{addr}}); err != nil {
		t.Fatal(err)
	}
	sameFiles(t, b, dir)
}

// TestServeWhileDownloading: a client that downloads a torrent from a slow
// seed (the torrent library's, at 1 MiB/s) serves the pieces it has
// verified, telling its peers of each (have); a leecher that knows only
// that client gets the whole torrent from it.
func TestServeWhileDownloading(t *testing.T) {
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 2 << 20}, 64<<10)
	s, err := anacrolixSeeder(b.root, b.infoBytes, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := ctxFor(t, 2*time.Minute)
	middle := New(Config{})
	mid, _ := addTorrent(t, middle, b, b.infoBytes)
	addr := serveOn(t, middle)
	midDone := make(chan error, 1)
	go func() { midDone <- mid.Download(ctx, DownloadOptions{Peers: []string{s.ListenAddrs()[0].String()}}) }()

	end, dir := addTorrent(t, New(Config{}), b, b.infoBytes)
	if err := end.Download(ctx, DownloadOptions{Peers: []string{addr}}); err != nil {
		t.Fatal(err)
	}
	sameFiles(t, b, dir)
	if err := <-midDone; err != nil {
		t.Fatal(err)
	}
}

// TestExtensionBetweenPeers: an extension between two clients of this
// package: a message over its MaxSize is dropped, one within it arrives,
// and OnClose follows the connection's end.
func TestExtensionBetweenPeers(t *testing.T) {
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 100 << 10}, 64<<10)
	got := make(chan string, 4)
	closed := make(chan struct{})
	files, err := OpenFiles(b.root, b.info)
	if err != nil {
		t.Fatal(err)
	}
	defer files.Close()
	s := New(Config{Extensions: []Extension{{
		Name: "x_test", MaxSize: 10,
		OnMessage: func(_ *Peer, payload []byte) { got <- string(payload) },
		OnClose:   func(*Peer) { close(closed) },
	}}})
	if _, err := s.Add(b.infoBytes, files, TorrentOptions{Have: func(int) bool { return true }}); err != nil {
		t.Fatal(err)
	}
	addr := serveOn(t, s)
	c := New(Config{Extensions: []Extension{{
		Name: "x_test",
		OnPeer: func(p *Peer) {
			p.SendExtended("x_test", []byte("eleven long"))
			p.SendExtended("x_test", []byte("short"))
			if err := p.SendExtended("not_offered", nil); err == nil {
				t.Error("a message of an extension the peer did not offer was sent")
			}
		},
	}}})
	tor, _ := addTorrent(t, c, b, b.infoBytes)
	ctx, cancel := context.WithCancel(ctxFor(t, time.Minute))
	ended := make(chan error, 1)
	go func() { ended <- tor.dial(ctx, addr) }()
	select {
	case m := <-got:
		if m != "short" {
			t.Errorf("got %q, want the message within MaxSize only", m)
		}
	case <-ctx.Done():
		t.Fatal("no message arrived")
	}
	cancel()
	<-ended
	select {
	case <-closed:
	case <-time.After(time.Minute):
		t.Fatal("OnClose was not called")
	}
	select {
	case m := <-got:
		t.Errorf("got %q too", m)
	default:
	}
}

// TestSeedsSeen: a torrent counts the peers it saw with every piece by
// peer id, connected or not: a seed that connects twice counts once, and
// still counts once it is gone.
func TestSeedsSeen(t *testing.T) {
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 300 << 10}, 64<<10)
	_, seed, _ := seeded(t, b, Config{})
	watcher := New(Config{})
	tor, _ := addTorrent(t, watcher, b, b.infoBytes)
	addr := serveOn(t, watcher)
	ctx := ctxFor(t, time.Minute)
	for range 2 {
		conn, cancel := context.WithCancel(ctx)
		ended := make(chan error, 1)
		go func() { ended <- seed.Connect(conn, addr) }()
		for tor.Stats().Seeds == 0 {
			if ctx.Err() != nil {
				t.Fatal("the watcher never saw the seed connected")
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		<-ended
	}
	for tor.Stats().Peers > 0 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	if st := tor.Stats(); st.Seeds != 0 || st.SeedsSeen != 1 {
		t.Errorf("stats %+v: want no seed connected, one seen", st)
	}
}

// TestConnsPerIP: once a torrent holds half its places, one address may
// not take more than ConnsPerIP of them: idle connections from one host
// beyond that are closed after their handshake, and a leecher from
// another address still gets a place and the torrent.
func TestConnsPerIP(t *testing.T) {
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 300 << 10}, 64<<10)
	_, tor, addr := seeded(t, b, Config{MaxConns: 8, ConnsPerIP: 2})
	for range 8 {
		sendHandshake(t, addr, b)
	}
	ctx := ctxFor(t, time.Minute)
	for tor.Stats().Peers < 4 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // the others' handshakes are read too
	if n := tor.Stats().Peers; n != 4 {
		t.Fatalf("the seeder holds %d idle connections from one address, want 4 (half its 8 places)", n)
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)}}
	leecher := New(Config{Dial: func(ctx context.Context, a string) (net.Conn, error) { return d.DialContext(ctx, "tcp", a) }})
	got, dir := addTorrent(t, leecher, b, b.infoBytes)
	if err := got.Download(ctx, DownloadOptions{Peers: []string{addr}}); err != nil {
		t.Fatal(err)
	}
	sameFiles(t, b, dir)
}
