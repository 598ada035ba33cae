package peerwire

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
	pp "github.com/anacrolix/torrent/peer_protocol"
)

// TestPEXMessage: a BEP 11 message of IPv4 and IPv6 peers, added with
// their flags and dropped, decodes to what was encoded; malformed ones
// fail.
func TestPEXMessage(t *testing.T) {
	t.Parallel()
	added := []pexPeer{
		{netip.MustParseAddrPort("10.0.0.1:6881"), pexSeed},
		{netip.MustParseAddrPort("192.0.2.7:1"), pexReachable | pexSeed},
		{netip.MustParseAddrPort("[2001:db8::1]:51413"), 0},
	}
	dropped := []netip.AddrPort{netip.MustParseAddrPort("10.0.0.2:2"), netip.MustParseAddrPort("[::1]:65535")}
	b := marshalPEX(added, dropped)
	want := "d5:added12:\x0a\x00\x00\x01\x1a\xe1\xc0\x00\x02\x07\x00\x017:added.f2:\x02\x126:added618:" +
		"\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\xc8\xd58:added6.f1:\x00" +
		"7:dropped6:\x0a\x00\x00\x02\x00\x028:dropped618:\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\xff\xffe"
	if string(b) != want {
		t.Errorf("marshalPEX = %q, want %q", b, want)
	}
	gotAdded, gotDropped, err := parsePEX(b)
	if err != nil || !slices.Equal(gotAdded, added) || !slices.Equal(gotDropped, dropped) {
		t.Errorf("parsePEX = %v, %v, %v", gotAdded, gotDropped, err)
	}
	// Flags may be missing: the peer has none.
	if a, _, err := parsePEX([]byte("d5:added6:\x01\x02\x03\x04\x00\x50e")); err != nil || len(a) != 1 || a[0].flags != 0 || a[0].addr.String() != "1.2.3.4:80" {
		t.Errorf("a message without flags: %v, %v", a, err)
	}
	for _, bad := range []string{"", "garbage", "i5e", "d5:added5:12345e", "d6:added617:12345678901234567e", "d7:dropped1:xe", "d5:addedi1ee", "l5:addede"} {
		if _, _, err := parsePEX([]byte(bad)); err == nil {
			t.Errorf("parsePEX(%q) took it", bad)
		}
	}
}

// TestPEXScope: addresses on loopback and private networks are told to
// and taken from peers of the same scope only.
func TestPEXScope(t *testing.T) {
	t.Parallel()
	cases := []struct {
		ip, peer string
		want     bool
	}{
		{"127.0.0.1", "127.0.0.1", true},
		{"127.0.0.1", "192.168.1.2", false},
		{"127.0.0.1", "203.0.113.9", false},
		{"::1", "::1", true},
		{"::1", "2001:db8::1", false},
		{"192.168.1.3", "192.168.1.2", true},
		{"10.0.0.3", "127.0.0.1", true},
		{"10.0.0.3", "203.0.113.9", false},
		{"fd00::3", "fd00::2", true},
		{"fe80::3", "2001:db8::1", false},
		{"203.0.113.9", "127.0.0.1", true},
		{"203.0.113.9", "10.0.0.1", true},
		{"2001:db8::1", "198.51.100.1", true},
	}
	for _, tc := range cases {
		if got := inScope(netip.MustParseAddr(tc.ip), netip.MustParseAddr(tc.peer)); got != tc.want {
			t.Errorf("inScope(%s, %s) = %v, want %v", tc.ip, tc.peer, got, tc.want)
		}
	}
}

// FuzzParsePEX: a message that decodes encodes to a message that decodes
// to the same peers.
func FuzzParsePEX(f *testing.F) {
	f.Add(marshalPEX([]pexPeer{{netip.MustParseAddrPort("10.0.0.1:6881"), 2}}, []netip.AddrPort{netip.MustParseAddrPort("[::1]:1")}))
	f.Add([]byte("d5:added6:\x01\x02\x03\x04\x00\x50e"))
	f.Fuzz(func(t *testing.T, b []byte) {
		added, dropped, err := parsePEX(b)
		if err != nil {
			return
		}
		a2, d2, err := parsePEX(marshalPEX(added, dropped))
		if err != nil {
			t.Fatal(err)
		}
		// Flags past the added peers are not kept; peers are, in order
		// by family.
		if len(a2) != len(added) || len(d2) != len(dropped) {
			t.Fatalf("%d added, %d dropped, then %d and %d", len(added), len(dropped), len(a2), len(d2))
		}
	})
}

// pexListens returns the listening addresses t knows of its peers.
func pexListens(t *Torrent) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for p := range t.peers {
		if p.listen.IsValid() {
			out = append(out, p.listen.String())
		}
	}
	return out
}

// waitFor polls cond every 20 ms until it holds, failing t after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// countingListener counts the bytes written to the connections it
// accepted.
type countingListener struct {
	net.Listener
	written *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.written}, nil
}

type countingConn struct {
	net.Conn
	written *atomic.Int64
}

func (c countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.written.Add(int64(n))
	return n, err
}

// serving adds b to a new client of cfg holding the pieces have says
// (nil: none), serves it on 127.0.0.1 until the test ends, counting the
// bytes it sends peers that connected into written, and returns the
// client, the torrent, its files' folder and address; it returns once the
// client announces its listening port.
func serving(t *testing.T, b *bundle, cfg Config, have func(int) bool, written *atomic.Int64) (*Client, *Torrent, string, string) {
	t.Helper()
	return servingAt(t, "127.0.0.1:0", b, cfg, have, written)
}

// servingAt is serving with a listener on laddr.
func servingAt(t *testing.T, laddr string, b *bundle, cfg Config, have func(int) bool, written *atomic.Int64) (*Client, *Torrent, string, string) {
	t.Helper()
	c := New(cfg)
	tor, dir := addTorrent(t, c, b, b.infoBytes)
	if have != nil {
		files, err := OpenFiles(b.root, b.info)
		if err != nil {
			t.Fatal(err)
		}
		defer files.Close()
		buf := make([]byte, b.info.PieceLength)
		for i := range tor.npieces {
			if !have(i) {
				continue
			}
			n, _ := files.ReadAt(buf[:tor.pieceSize(i)], int64(i)*tor.pieceLen)
			if _, err := tor.store.WriteAt(buf[:n], int64(i)*tor.pieceLen); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := tor.Check(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	addr := serveAt(t, c, laddr, func(ln net.Listener) net.Listener { return countingListener{ln, written} })
	waitFor(t, time.Minute, "listening port", func() bool { return c.listenPort.Load() != 0 })
	return c, tor, dir, addr
}

// downloadInBackground runs tor.Download with o until the test ends, and
// returns a channel of its result.
func downloadInBackground(t *testing.T, tor *Torrent, o DownloadOptions) <-chan error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tor.Download(ctx, o) }()
	t.Cleanup(func() { cancel(); <-done })
	return done
}

// TestPEXThreePeers: a seed serves at 16 KiB/s; a second client, which
// holds the second half of the pieces and serves them, downloads the
// first half from it; a third, given only the seed, learns the second's
// address from the seed's ut_pex message, dials it, and fetches the
// second half from it, on IPv4 and on IPv6. With Config.NoPEX on the
// seed, the third learns nothing.
func TestPEXThreePeers(t *testing.T) {
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 1 << 20}, 64<<10)
	n := len(b.info.Pieces) / 20
	secondHalf := func(i int) bool { return i >= n/2 }
	for _, tc := range []struct {
		name  string
		noPEX bool
		host  string
	}{{"pex", false, "127.0.0.1"}, {"IPv6", false, "[::1]"}, {"NoPEX", true, "127.0.0.1"}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.host == "[::1]" {
				if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
					t.Skipf("no IPv6 loopback: %v", err)
				} else {
					ln.Close()
				}
			}
			s, seedTor := seedClient(t, b, Config{UploadRate: 16 << 10, NoPEX: tc.noPEX})
			seed := serveAt(t, s, tc.host+":0", func(ln net.Listener) net.Listener { return ln })
			var sent atomic.Int64
			_, second, _, secondAddr := servingAt(t, tc.host+":0", b, Config{}, secondHalf, &sent)
			downloadInBackground(t, second, DownloadOptions{Peers: []string{seed}})
			waitFor(t, time.Minute, "second client's address at the seed", func() bool {
				return slices.Contains(pexListens(seedTor), secondAddr)
			})

			third := New(Config{})
			thirdTor, dir := addTorrent(t, third, b, b.infoBytes)
			var mu sync.Mutex
			var learnt []string
			o := DownloadOptions{
				Peers: []string{seed},
				Want:  secondHalf,
				OnPEXPeer: func(a string) {
					mu.Lock()
					defer mu.Unlock()
					learnt = append(learnt, a)
				},
			}
			ctx := ctxFor(t, 2*time.Minute)
			if tc.noPEX {
				ctx = ctxFor(t, 3*time.Second)
			}
			err := thirdTor.Download(ctx, o)
			mu.Lock()
			defer mu.Unlock()
			if tc.noPEX {
				if len(learnt) > 0 || sent.Load() > 0 {
					t.Errorf("with NoPEX on the seed, the third client learnt %v", learnt)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(learnt, []string{secondAddr}) {
				t.Errorf("the third client learnt %v by PEX, want the second's %s", learnt, secondAddr)
			}
			if n := sent.Load(); n < BlockSize {
				t.Errorf("the second client sent the third %d bytes", n)
			}
			files, err := OpenFiles(dir, b.info)
			if err != nil {
				t.Fatal(err)
			}
			defer files.Close()
			want, got := make([]byte, b.info.PieceLength), make([]byte, b.info.PieceLength)
			src, _ := OpenFiles(b.root, b.info)
			defer src.Close()
			for i := n / 2; i < n; i++ {
				src.ReadAt(want, int64(i)*b.info.PieceLength)
				files.ReadAt(got, int64(i)*b.info.PieceLength)
				if !bytes.Equal(want, got) {
					t.Fatalf("piece %d differs", i)
				}
			}
		})
	}
}

// pexSpammer is a hostile peer that offers ut_pex and, once it has the
// other side's extended handshake, sends it the ut_pex payloads of msgs
// (all on the first connection, nothing on later ones), then reads until
// the connection ends.
func pexSpammer(t *testing.T, b *bundle, msgs [][]byte) *hostile {
	var once sync.Once
	return hostilePeer(t, b, true, func(h *hostile, conn net.Conn, r *bufio.Reader) {
		eh, _ := bencode.Marshal(extHandshake{M: map[string]int{pexName: 7}})
		conn.Write(appendExtended(nil, 0, eh))
		first := false
		once.Do(func() { first = true })
		for first {
			typ, body, err := readMessage(r, 0)
			if err != nil {
				return
			}
			if typ != pp.Extended || body[0] != 0 {
				continue
			}
			var theirs extHandshake
			bencode.Unmarshal(body[1:], &theirs)
			id := byte(theirs.M[pexName])
			if id == 0 {
				t.Error("the downloader does not offer ut_pex")
				return
			}
			for _, m := range msgs {
				if _, err := conn.Write(appendExtended(nil, id, m)); err != nil {
					return
				}
			}
			break
		}
		h.drain(conn, r)
	})
}

// addrs returns n addresses 127.<b>.x.y:port.
func loopbackAddrs(b byte, n int, port uint16) []pexPeer {
	var out []pexPeer
	for i := range n {
		out = append(out, pexPeer{netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, b, byte(i >> 8), byte(i)}), port), 0})
	}
	return out
}

// TestPEXHostile: a downloader whose peer sends oversized, garbage and
// malformed ut_pex messages, 10,000 addresses in one message, its own
// listening address, port 0, unspecified, multicast and broadcast
// addresses, messages too often, or 10,000 addresses 50 at a time,
// takes at most 50 addresses a message and 200 from the connection,
// dials none it must not, and completes from the seed its caller gave;
// addresses that hang do not crowd that seed out.
func TestPEXHostile(t *testing.T) {
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 256 << 10}, 64<<10)
	// The seed tells no peers: what the downloaders learn comes from the
	// spammer alone.
	_, _, seed := seeded(t, b, Config{NoPEX: true})
	forbidden := func(own netip.AddrPort) []pexPeer {
		var out []pexPeer
		for _, a := range []string{own.String(), "127.0.0.1:0", "0.0.0.0:1", "224.0.0.1:1", "255.255.255.255:1", "[::]:1", "[ff02::1]:1"} {
			out = append(out, pexPeer{netip.MustParseAddrPort(a), 0})
		}
		return out
	}
	// silent listeners accept connections and never answer.
	var silent []pexPeer
	for range 10 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				t.Cleanup(func() { c.Close() })
			}
		}()
		silent = append(silent, pexPeer{netip.MustParseAddrPort(ln.Addr().String()), 0})
	}
	cases := []struct {
		name     string
		msgs     func(own netip.AddrPort) [][]byte
		timing   pexTiming
		maxConns int
		learn    int  // addresses learnt before the seed is given, at most this many
		allowed  byte // the second byte of the loopback addresses that may be learnt
	}{
		{"malformed, too many, forbidden, too often", func(own netip.AddrPort) [][]byte {
			big := marshalPEX(loopbackAddrs(3, 10000, 9), nil)
			return [][]byte{
				[]byte("garbage"), []byte("d5:added7:1234567e"), append([]byte("d5:added100000:"), make([]byte, 100001)...),
				big,
				marshalPEX(append(forbidden(own), loopbackAddrs(1, 993, 9)...), nil),
				marshalPEX(loopbackAddrs(2, 50, 9), nil), // too soon after the last
			}
		}, defaultPEXTiming, 0, pexMaxAdded - 5, 1}, // IPv4 first: 5 forbidden of the first 50
		{"10,000 addresses 50 at a time", func(own netip.AddrPort) [][]byte {
			var msgs [][]byte
			all := loopbackAddrs(1, 10000, 9)
			for i := 0; i < len(all); i += pexMaxAdded {
				msgs = append(msgs, marshalPEX(all[i:i+pexMaxAdded], nil))
			}
			return msgs
		}, pexTiming{retry: time.Second}, 0, pexMaxPerConn, 1}, // no message too soon
		{"hanging addresses", func(own netip.AddrPort) [][]byte {
			return [][]byte{marshalPEX(silent, nil)}
		}, defaultPEXTiming, 4, len(silent), 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var dialled, learnt []string
			var d net.Dialer
			cfg := Config{MaxConns: tc.maxConns, Dial: func(ctx context.Context, a string) (net.Conn, error) {
				mu.Lock()
				dialled = append(dialled, a)
				mu.Unlock()
				return d.DialContext(ctx, "tcp", a)
			}}
			if tc.maxConns > 0 {
				cfg.HandshakeTimeout = 10 * time.Minute // a hanging dial is never given up in the test
			}
			c, tor, dir, own := serving(t, b, cfg, nil, new(atomic.Int64))
			c.pex = tc.timing
			ownAP := netip.MustParseAddrPort(own)
			spammer := pexSpammer(t, b, tc.msgs(ownAP))
			more := make(chan string, 1)
			o := DownloadOptions{Peers: []string{spammer.addr}, MorePeers: more, OnPEXPeer: func(a string) {
				mu.Lock()
				defer mu.Unlock()
				learnt = append(learnt, a)
				if len(learnt) == tc.learn {
					more <- seed
				}
			}}
			if err := tor.Download(ctxFor(t, time.Minute), o); err != nil {
				t.Fatalf("the download with the seed given after the spam: %v (%d addresses learnt)", err, len(learnt))
			}
			sameFiles(t, b, dir)
			mu.Lock()
			defer mu.Unlock()
			if len(learnt) > tc.learn {
				t.Errorf("%d addresses learnt by PEX, want at most %d", len(learnt), tc.learn)
			}
			for _, a := range learnt {
				ap := netip.MustParseAddrPort(a)
				if tc.allowed != 0 && (!ap.Addr().Is4() || ap.Addr().As4()[1] != tc.allowed || ap.Port() != 9) {
					t.Errorf("learnt %s", a)
				}
			}
			bad := map[string]bool{}
			for _, f := range forbidden(ownAP) {
				bad[f.addr.String()] = true
			}
			for _, a := range dialled {
				if bad[a] {
					t.Errorf("dialled %s", a)
				}
			}
		})
	}
}
