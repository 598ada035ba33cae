package peerwire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	pp "github.com/anacrolix/torrent/peer_protocol"

	"github.com/anacrolix/torrent"

	"github.com/relay-sh/relay/dht/localnet"
)

// swarm serves b from a seed of its own, its upload capped at rate and
// its torrent added with o, to n leechers of this package: each
// downloads with the seed's and every other leecher's address and serves
// on a listener of its own, as a fleet of watchers would. It checks every
// leecher's files, and returns what the seed uploaded, in copies of the
// torrent, and the time until every leecher had every piece.
func swarm(t testing.TB, b *bundle, n int, rate int64, o TorrentOptions) (float64, time.Duration) {
	t.Helper()
	_, seed, seedAddr := seededWith(t, b, Config{UploadRate: rate, MaxConns: n + 10}, o)
	type leech struct {
		tor  *Torrent
		dir  string
		addr string
	}
	ls := make([]leech, n)
	for k := range ls {
		c := New(Config{MaxConns: 2*n + 10})
		ls[k].tor, ls[k].dir = addTorrent(t, c, b, b.infoBytes)
		ls[k].addr = serveOn(t, c)
	}
	ctx := ctxFor(t, 10*time.Minute)
	start := time.Now()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for k := range ls {
		peers := []string{seedAddr}
		for j := range ls {
			if j != k {
				peers = append(peers, ls[j].addr)
			}
		}
		wg.Go(func() { errs[k] = ls[k].tor.Download(ctx, DownloadOptions{Peers: peers}) })
	}
	wg.Wait()
	took := time.Since(start)
	for k, l := range ls {
		if errs[k] != nil {
			t.Fatalf("leecher %d: %v", k, errs[k])
		}
		sameFiles(t, b, l.dir)
	}
	return float64(seed.Stats().Uploaded) / float64(b.info.TotalLength()), took
}

// TestInitialSeedingSwarm: swarms of 1, 2, 8 and 16 leechers of this
// package get a 16 MiB torrent whole from an initial seed whose upload
// is capped at 4 MB/s, as a publisher's uplink is, each piece offered
// being passed on between leechers (PassOnWait is an hour: a leecher
// waiting for it would not finish within the test's deadline). It
// reports the seed's upload in copies; 8 leechers take less than 2
// (about 1, where a normal seed uploads more than 3).
func TestInitialSeedingSwarm(t *testing.T) {
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 16<<20 - 12345, "lib/x": 12345}, 64<<10)
	for _, n := range []int{1, 2, 8, 16} {
		if testing.Short() && n > 2 {
			continue
		}
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			copies, took := swarm(t, b, n, 4<<20, TorrentOptions{InitialSeeding: true, PassOnWait: time.Hour})
			t.Logf("%d leechers: the seed uploaded %.2f copies, all complete in %v", n, copies, took.Round(time.Millisecond))
			if copies >= 2 {
				t.Errorf("the seed uploaded %.2f copies to %d leechers, want less than 2", copies, n)
			}
		})
	}
}

// TestSwarmNormalSeeding: the same swarm of 8 from a normal seed, the
// baseline of TestInitialSeedingSwarm's figure.
func TestSwarmNormalSeeding(t *testing.T) {
	if testing.Short() {
		t.Skip("a baseline")
	}
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 16<<20 - 12345, "lib/x": 12345}, 64<<10)
	copies, took := swarm(t, b, 8, 4<<20, TorrentOptions{})
	t.Logf("8 leechers: the seed uploaded %.2f copies, all complete in %v", copies, took.Round(time.Millisecond))
}

// wirePeer is a peer written for a test, speaking the wire by hand to a
// client of this package.
type wirePeer struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
	n    int // the torrent's pieces
}

// dialWire connects to addr for b with a peer id of its own, with the
// fast extension, and reads the handshake's answer.
func dialWire(t *testing.T, addr string, b *bundle) *wirePeer {
	t.Helper()
	conn := sendHandshake(t, addr, b)
	r := bufio.NewReader(conn)
	if _, err := readHandshake(r); err != nil {
		t.Fatal(err)
	}
	return &wirePeer{t: t, conn: conn, r: r, n: len(b.info.Pieces) / 20}
}

func (w *wirePeer) send(typ pp.MessageType, fields ...uint32) {
	if _, err := w.conn.Write(appendMsg(nil, typ, fields...)); err != nil {
		w.t.Fatal(err)
	}
}

// read returns the next message but a keep-alive, or ok false when none
// came within d.
func (w *wirePeer) read(d time.Duration) (typ pp.MessageType, body []byte, ok bool) {
	w.t.Helper()
	w.conn.SetReadDeadline(time.Now().Add(d))
	for {
		typ, n, err := readHeader(w.r, w.n)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return 0, nil, false
		}
		if err != nil {
			w.t.Fatal(err)
		}
		if n < 0 {
			continue
		}
		body = make([]byte, n)
		if _, err := io.ReadFull(w.r, body); err != nil {
			w.t.Fatal(err)
		}
		return typ, body, true
	}
}

// until reads messages until one of typ, and returns its body; it skips
// the extended handshake and chokes.
func (w *wirePeer) until(typ pp.MessageType) []byte {
	w.t.Helper()
	for {
		got, body, ok := w.read(time.Minute)
		if !ok {
			w.t.Fatalf("no message of type %v within a minute", typ)
		}
		if got == typ {
			return body
		}
		if got != pp.Extended && got != pp.Choke {
			w.t.Fatalf("got a message of type %v, waiting for %v", got, typ)
		}
	}
}

// offer reads the seed's first messages to a new peer: have none, then
// one have, the piece it offers.
func (w *wirePeer) offer() int {
	w.t.Helper()
	if typ, _, ok := w.read(time.Minute); !ok || typ != pp.HaveNone {
		w.t.Fatalf("an initial seed's first message is of type %v, want have none", typ)
	}
	return int(be32(w.until(pp.Have)))
}

// download asks the seed for every block of piece i, after telling it
// it is interested, and returns the piece.
func (w *wirePeer) download(pieceLen, i int) []byte {
	w.t.Helper()
	w.send(pp.Interested)
	w.until(pp.Unchoke)
	return w.fetch(pieceLen, i)
}

// fetch asks an unchoking seed for every block of piece i, and returns
// the piece.
func (w *wirePeer) fetch(pieceLen, i int) []byte {
	w.t.Helper()
	for off := 0; off < pieceLen; off += BlockSize {
		w.send(pp.Request, uint32(i), uint32(off), BlockSize)
	}
	data := make([]byte, pieceLen)
	for got := 0; got < pieceLen; got += BlockSize {
		body := w.until(pp.Piece)
		if be32(body) != uint32(i) {
			w.t.Fatalf("got a block of piece %d, asked for %d", be32(body), i)
		}
		copy(data[be32(body[4:]):], body[8:])
	}
	return data
}

// TestInitialSeedingHostile: peers that try to take more than their
// share of an initial seed get none of it. A peer gets refused the
// pieces it was not offered, and each byte of its offer once however
// often it asks; a peer that claims pieces no one could have yet does
// not earn another peer its next piece, where a peer that announces one
// it could have does; peers that connect again and again under new peer
// ids get a piece each, never one the seed uploaded before; and a
// leecher after them still gets the whole torrent.
func TestInitialSeedingHostile(t *testing.T) {
	t.Parallel()
	const pieceLen = 64 << 10
	b := makeBundle(t, map[string]int64{"app": 1<<20 - 1000, "b": 1000}, pieceLen)
	_, seed, addr := seededWith(t, b, Config{}, TorrentOptions{InitialSeeding: true, PassOnWait: time.Hour})
	files, err := OpenFiles(b.root, b.info)
	if err != nil {
		t.Fatal(err)
	}
	defer files.Close()
	wantPiece := func(i int, got []byte) {
		t.Helper()
		want := make([]byte, pieceLen)
		if _, err := files.ReadAt(want, int64(i)*pieceLen); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("piece %d is not the seed's", i)
		}
	}

	a := dialWire(t, addr, b)
	x := a.offer()
	// c lacks x (and takes part: it just joined), so that a, once it has
	// x, waits for x to be passed on.
	c := dialWire(t, addr, b)
	c.offer()
	c.send(pp.HaveNone)
	a.send(pp.Interested)
	a.until(pp.Unchoke)
	other := (x + 1) % a.n
	a.send(pp.Request, uint32(other), 0, BlockSize)
	for range 2 { // every block of x, twice
		for off := 0; off < pieceLen; off += BlockSize {
			a.send(pp.Request, uint32(x), uint32(off), BlockSize)
		}
	}
	data := make([]byte, pieceLen)
	var blocks, rejects int
	for blocks < pieceLen/BlockSize || rejects < 1+pieceLen/BlockSize {
		typ, body, ok := a.read(time.Minute)
		switch {
		case !ok:
			t.Fatalf("%d blocks and %d rejects after a minute, want %d and %d", blocks, rejects, pieceLen/BlockSize, 1+pieceLen/BlockSize)
		case typ == pp.Piece:
			if be32(body) != uint32(x) {
				t.Fatalf("the seed sent a block of piece %d, not offered", be32(body))
			}
			copy(data[be32(body[4:]):], body[8:])
			blocks++
		case typ == pp.Reject:
			rejects++
		case typ == pp.Have:
			t.Fatalf("a was offered piece %d before it passed on its piece %d", be32(body), x)
		}
	}
	wantPiece(x, data)
	waitFor(t, time.Minute, "the piece counted as uploaded", func() bool { return seed.Stats().Uploaded >= pieceLen })
	if up := seed.Stats().Uploaded; up != pieceLen {
		t.Fatalf("the seed uploaded %d bytes to a peer that asked for its piece twice, want %d", up, pieceLen)
	}

	// A liar's claim does not count as passing x on.
	liar := dialWire(t, addr, b)
	liar.offer()
	a.send(pp.Have, uint32(x))
	all := newBitfield(a.n)
	for i := range a.n {
		all.set(i)
	}
	if _, err := liar.conn.Write(appendBitfield(nil, all)); err != nil {
		t.Fatal(err)
	}
	if typ, body, ok := a.read(2 * time.Second); ok && typ == pp.Have {
		t.Fatalf("a peer claiming every piece earned a its next piece, %d", be32(body))
	}
	h := dialWire(t, addr, b)
	z := h.offer()
	if z == x {
		t.Fatalf("piece %d offered again before every piece was once", x)
	}
	h.send(pp.Have, uint32(x))
	if next := int(be32(a.until(pp.Have))); next == x {
		t.Fatalf("a was offered its piece %d again", x)
	}

	// New peer ids again and again: a new piece each.
	uploaded := map[int]bool{x: true}
	for range 4 {
		w := dialWire(t, addr, b)
		i := w.offer()
		if uploaded[i] {
			t.Fatalf("piece %d offered to a new peer id, uploaded before", i)
		}
		uploaded[i] = true
		wantPiece(i, w.download(pieceLen, i))
		w.conn.Close()
	}
	// Stats counts a block once written, which may be after it was read.
	waitFor(t, time.Minute, "the pieces counted as uploaded", func() bool { return seed.Stats().Uploaded >= int64(len(uploaded))*pieceLen })
	if up := seed.Stats().Uploaded; up != int64(len(uploaded))*pieceLen {
		t.Fatalf("the seed uploaded %d bytes for %d pieces of %d", up, len(uploaded), pieceLen)
	}

	for _, w := range []*wirePeer{a, c, liar, h} {
		w.conn.Close()
	}
	tor, dir := addTorrent(t, New(Config{}), b, b.infoBytes)
	if err := tor.Download(ctxFor(t, 2*time.Minute), DownloadOptions{Peers: []string{addr}}); err != nil {
		t.Fatal(err)
	}
	sameFiles(t, b, dir)
	if up, most := seed.Stats().Uploaded, b.info.TotalLength()+int64(len(uploaded))*pieceLen; up > most {
		t.Errorf("the seed uploaded %d bytes, more than the leecher's %d and the %d pieces before", up, b.info.TotalLength(), len(uploaded))
	}
}

// TestInitialSeedingToLibtorrent: libtorrent leechers, given the magnet
// link and an initial seed's address, fetch the info and every piece and
// check them: one alone, then two at once (which find each other in the
// DHT). PassOnWait is short: two libtorrents that did not find each
// other would wait for it at each piece.
func TestInitialSeedingToLibtorrent(t *testing.T) {
	py := needLibtorrent(t)
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 2<<20 + 99, "x/y": 300 << 10}, 64<<10)
	_, seed, addr := seededWith(t, b, Config{}, TorrentOptions{InitialSeeding: true, PassOnWait: 2 * time.Second})
	ln := localnet.ForTest(t, localnet.Config{Nodes: 2})
	ctx := ctxFor(t, 3*time.Minute)
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	if err := ltFetch(ctx, py, ln, b, dirs[0], addr); err != nil {
		t.Fatalf("%v\n%s", err, seedView(seed))
	}
	before := seed.Stats().Uploaded
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for k := range errs {
		wg.Go(func() { errs[k] = ltFetch(ctx, py, ln, b, dirs[1+k], addr) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("%v\n%s", err, seedView(seed))
		}
	}
	for _, dir := range dirs {
		sameFiles(t, b, dir)
	}
	t.Logf("the seed uploaded %.2f copies to one libtorrent, %.2f to two", float64(before)/float64(b.info.TotalLength()),
		float64(seed.Stats().Uploaded-before)/float64(b.info.TotalLength()))
}

// seedView describes an initial seed's state, for a failure: each
// connected peer's offer and what it has, and the copies uploaded of
// each piece.
func seedView(tor *Torrent) string {
	tor.mu.Lock()
	defer tor.mu.Unlock()
	var w strings.Builder
	fmt.Fprintf(&w, "the seed: %d peers\n", len(tor.peers))
	for p := range tor.peers {
		fmt.Fprintf(&w, "  peer %s: has %d pieces (all: %v), interested %v, choked %v", p.addr, p.nhas, p.hasAll, p.interested, p.amChoking)
		if o := tor.ss.peers[p]; o != nil {
			fmt.Fprintf(&w, ", offer %d (%d bytes sent, had %v, passed %v, liar %v, heard %v ago)",
				o.piece, o.sent, o.had, o.passed, o.liar, time.Since(o.heard).Round(time.Millisecond))
		}
		w.WriteByte('\n')
	}
	w.WriteString("  copies uploaded by piece:")
	for i, n := range tor.ss.sent {
		fmt.Fprintf(&w, " %d:%.2f", i, float64(n)/float64(tor.pieceSize(i)))
	}
	return w.String()
}

// TestInitialSeedingToAnacrolix: two clients of the torrent library,
// each given an initial seed's address and the other's, get every piece
// and check them. PassOnWait is short: the two may not keep a connection
// to each other (the library drops one of two connections of a peer id),
// and would then wait for it at each piece.
func TestInitialSeedingToAnacrolix(t *testing.T) {
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 2<<20 + 777, "data/big": 1 << 20}, 64<<10)
	_, seed, addr := seededWith(t, b, Config{UploadRate: 4 << 20}, TorrentOptions{InitialSeeding: true, PassOnWait: time.Second})
	// Each uploads to the other after it has every piece (without Seed,
	// the library stops serving then, and the other's requests queued
	// at it wait out its request timeout, 150 s).
	peer := func() (*torrent.Client, string) {
		cfg := anacrolixConfig(t.TempDir())
		cfg.Seed = true
		return anacrolixPeerWith(t, b, addr, cfg)
	}
	cl1, addr1 := peer()
	cl2, addr2 := peer()
	for _, c := range []struct {
		cl    *torrent.Client
		other string
	}{{cl1, addr2}, {cl2, addr1}} {
		ta, err := net.ResolveTCPAddr("tcp", c.other)
		if err != nil {
			t.Fatal(err)
		}
		tt, _ := c.cl.Torrent(b.info2hash())
		tt.AddPeers([]torrent.PeerInfo{{Addr: ta}})
	}
	for _, cl := range []*torrent.Client{cl1, cl2} {
		tt, _ := cl.Torrent(b.info2hash())
		waitFor(t, 3*time.Minute, "every piece at the torrent library's client", func() bool { return tt.BytesMissing() == 0 })
	}
	t.Logf("the seed uploaded %.2f copies to two clients of the torrent library", float64(seed.Stats().Uploaded)/float64(b.info.TotalLength()))
}

// TestInitialSeedingOpenAndDeclined: a peer is told of the open pieces
// (a bitfield) and may fetch them besides its offer; an offer it is not
// interested in is replaced by another after a while, and becomes its
// offer again when it asks for it before any of the other.
func TestInitialSeedingOpenAndDeclined(t *testing.T) {
	t.Parallel()
	const pieceLen = 64 << 10
	b := makeBundle(t, map[string]int64{"app": 1 << 20}, pieceLen)
	n := len(b.info.Pieces) / 20
	last := func(i int) bool { return i == n-1 }
	_, _, addr := seededWith(t, b, Config{}, TorrentOptions{InitialSeeding: true, OpenPieces: last})
	w := dialWire(t, addr, b)
	if typ, body, ok := w.read(time.Minute); !ok || typ != pp.Bitfield || !bytes.Equal(body, []byte{0, 1}) {
		t.Fatalf("first message of type %v, %x, want the bitfield of piece %d", typ, body, n-1)
	}
	x := int(be32(w.until(pp.Have)))
	if x == n-1 {
		t.Fatalf("open piece %d offered", x)
	}
	// Not interested: another offer follows.
	if y := int(be32(w.until(pp.Have))); y == x || y == n-1 {
		t.Fatalf("offered %d after %d was declined", y, x)
	}
	w.download(pieceLen, n-1)
	w.fetch(pieceLen, x)
}

// BenchmarkInitialSeeding: swarms of 8, 16 and 50 leechers of this
// package (each given the seed's and every other leecher's address, as
// in TestInitialSeedingSwarm) get a 16 MiB torrent (64 MiB with
// RELAY_BENCH_BIG=1; 64 KiB pieces) from a seed whose upload is capped
// at 4 MB/s, in turn from a normal seed and from an initial seed, in the
// same run. It reports for each swarm the seed's upload in copies of the
// torrent and the time until every leecher had every piece, and the
// initial seed's figures as ratios to the normal seed's.
func BenchmarkInitialSeeding(b *testing.B) {
	size := int64(16 << 20)
	if os.Getenv("RELAY_BENCH_BIG") != "" {
		size = 64 << 20
	}
	bu := makeBundle(b, map[string]int64{"app": size - 12345, "lib/x": 12345}, 64<<10)
	for range b.N {
		for _, n := range []int{8, 16, 50} {
			normal, normalTook := swarm(b, bu, n, 4<<20, TorrentOptions{})
			initial, initialTook := swarm(b, bu, n, 4<<20, TorrentOptions{InitialSeeding: true})
			b.Logf("%d leechers: normal seed %.2f copies in %v, initial seed %.2f copies in %v: %.3fx the copies, %.3fx the time",
				n, normal, normalTook.Round(time.Millisecond), initial, initialTook.Round(time.Millisecond),
				initial/normal, initialTook.Seconds()/normalTook.Seconds())
			b.ReportMetric(normal, fmt.Sprintf("copies-normal-%d", n))
			b.ReportMetric(initial, fmt.Sprintf("copies-initial-%d", n))
			b.ReportMetric(normalTook.Seconds(), fmt.Sprintf("s-normal-%d", n))
			b.ReportMetric(initialTook.Seconds(), fmt.Sprintf("s-initial-%d", n))
			b.ReportMetric(initial/normal, fmt.Sprintf("x-copies-%d", n))
			b.ReportMetric(initialTook.Seconds()/normalTook.Seconds(), fmt.Sprintf("x-time-%d", n))
		}
	}
}
