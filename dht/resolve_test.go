package dht_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"
	"github.com/relay-sh/relay/dht"
	"github.com/relay-sh/relay/dht/localnet"
	"github.com/relay-sh/relay/record"
)

// fakeNode is a raw KRPC responder on 127.0.0.1: a DHT node that answers
// every get with the item it is given, whatever it is, and names no other
// node.
type fakeNode struct {
	conn net.PacketConn
	id   krpc.ID
	item krpc.Bep44Return
	// raw, when set, is sent instead of the answer to a get: given the
	// query's transaction ID, it returns the bytes to send.
	raw func(tid string) []byte
	wg  sync.WaitGroup
}

func startFake(t *testing.T, id krpc.ID, item krpc.Bep44Return, raw func(tid string) []byte) *fakeNode {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeNode{conn: c, id: id, item: item, raw: raw}
	f.wg.Go(f.serve)
	t.Cleanup(func() {
		c.Close()
		f.wg.Wait()
	})
	return f
}

func (f *fakeNode) serve() {
	buf := make([]byte, 2048)
	for {
		n, from, err := f.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		var q krpc.Msg
		if bencode.Unmarshal(buf[:n], &q) != nil || q.Y != "q" {
			continue
		}
		r := krpc.Return{ID: f.id}
		if q.Q == "get" && f.raw != nil {
			f.conn.WriteTo(f.raw(q.T), from)
			continue
		}
		if q.Q == "get" {
			tok := "token"
			r.Token = &tok
			r.Bep44Return = f.item
		}
		b, err := bencode.Marshal(krpc.Msg{T: q.T, Y: "r", R: &r})
		if err == nil {
			f.conn.WriteTo(b, from)
		}
	}
}

func bencodeString(b []byte) bencode.Bytes {
	return bencode.Bytes(strconv.Itoa(len(b)) + ":" + string(b))
}

// A node that answers with a forged packet (higher seq, bad signature), a
// packet of another key, an older valid packet, an oversized or malformed
// item, or bytes that are not a KRPC answer at all changes nothing: every
// answer is verified and the highest valid seq wins.
func TestResolveIgnoresForgedAndOlderAnswers(t *testing.T) {
	net := sharedNet(t)
	ctx := ctxFor(t, 30*time.Second)
	key := newKey(t)
	pk := key.PublicKey()
	older, err := record.Sign(key, time.Now().UnixMicro()-1e6, mustPacket(t, pk, release(t, "stable", "0.9.0")))
	if err != nil {
		t.Fatal(err)
	}
	good, _, err := net.Nodes[20].Publish(ctx, key, setRelease(pk, release(t, "stable", "1.0.0")))
	if err != nil {
		t.Fatal(err)
	}
	forgedSeq := good.Seq + 1000
	otherKey := newKey(t)
	otherSigned, err := record.Sign(otherKey, forgedSeq, good.Packet)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		item    krpc.Bep44Return
		raw     func(tid string) []byte
		invalid int
		older   int
	}{
		{"bad signature", krpc.Bep44Return{V: bencodeString(good.Packet), K: pk, Sig: good.Sig, Seq: &forgedSeq}, nil, 1, 0},
		{"another key", krpc.Bep44Return{V: bencodeString(good.Packet), K: pk, Sig: otherSigned.Sig, Seq: &forgedSeq}, nil, 1, 0},
		{"older", krpc.Bep44Return{V: bencodeString(older.Packet), K: pk, Sig: older.Sig, Seq: &older.Seq}, nil, 0, 1},
		{"not a string", krpc.Bep44Return{V: bencode.Bytes("i42e"), K: pk, Sig: good.Sig, Seq: &forgedSeq}, nil, 1, 0},
		{"oversized", krpc.Bep44Return{V: bencodeString(make([]byte, 1500)), K: pk, Sig: good.Sig, Seq: &forgedSeq}, nil, 1, 0},
		{"not a DNS packet", krpc.Bep44Return{V: bencodeString([]byte("\xff\xfe not dns")), K: pk, Sig: good.Sig, Seq: &forgedSeq}, nil, 1, 0},
		{"no seq", krpc.Bep44Return{V: bencodeString(good.Packet), K: pk, Sig: good.Sig}, nil, 1, 0},
		{"garbage", krpc.Bep44Return{}, func(tid string) []byte {
			return []byte("d1:t" + strconv.Itoa(len(tid)) + ":" + tid + "1:y1:r1:rd2:id3:abc5:token")
		}, 0, 0},
		{"wrong types", krpc.Bep44Return{}, func(tid string) []byte {
			return []byte("d1:t" + strconv.Itoa(len(tid)) + ":" + tid + "1:y1:r1:rd2:idi7e1:vli1eee1:ki3e3:seq2:xxee")
		}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The fake takes the place closest to the key's target, in the
			// table of a read-only node that joins through it (and the
			// network's bootstrap node) and that nobody else knows.
			id := krpc.ID(record.Target(pk))
			id[19] ^= 1
			fake := startFake(t, id, tc.item, tc.raw)
			ro, err := dht.New(ctx, net.Config(func(c *dht.Config) {
				c.ReadOnly = true
				c.Bootstrap = append([]string{fake.conn.LocalAddr().String()}, c.Bootstrap...)
			}))
			if err != nil {
				t.Fatal(err)
			}
			defer ro.Close()
			if !slices.ContainsFunc(ro.Server().Nodes(), func(ni krpc.NodeInfo) bool { return ni.ID == id }) {
				t.Fatal("the fake node is not in the routing table")
			}
			// A resolve ends once enough of the closest nodes hold the
			// newest packet, and may end before the fake's answer is read
			// on a loaded machine (CI's run once saw 8 genuine answers
			// and not the fake's). Resolve again until the answer of a
			// fake whose answer counts (invalid or older) was heard: every
			// resolve must return the genuine packet.
			var st dht.ResolveStats
			for range 5 {
				var got *record.SignedPacket
				got, st, err = ro.Resolve(ctx, pk)
				if err != nil {
					t.Fatal(err)
				}
				if got.Seq != good.Seq || got.Sig != good.Sig {
					t.Fatalf("resolved seq %d, want the genuine %d", got.Seq, good.Seq)
				}
				if st.Invalid+st.Older > 0 || tc.invalid+tc.older == 0 {
					break
				}
			}
			// The K closest nodes this resolver finds may differ by a node
			// or two from those the publish stored on (CI's race run once
			// found 6 holding it besides the fake, not 7): half of them
			// holding it shows the fake's answer took nobody's place.
			if st.Invalid != tc.invalid || st.Older != tc.older || st.Held < dht.K/2 {
				t.Fatalf("stats %+v: want %d invalid, %d older, the genuine packet held by %d or more", st, tc.invalid, tc.older, dht.K/2)
			}
		})
	}
}

// A resolve works once the publisher's node has closed: the packet lives
// on the nodes that acknowledged it.
func TestResolveAfterPublisherClosed(t *testing.T) {
	net := localnet.ForTest(t, localnet.Config{Nodes: 16})
	ctx := ctxFor(t, 30*time.Second)
	pub, err := net.Add(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	key := newKey(t)
	p, _, err := pub.Publish(ctx, key, setRelease(key.PublicKey(), release(t, "stable", "1.0.0")))
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	got, st, err := net.Nodes[0].Resolve(ctx, key.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if got.Seq != p.Seq {
		t.Fatalf("resolved seq %d, want %d", got.Seq, p.Seq)
	}
	t.Logf("resolve with the publisher gone: %+v", st)
	if _, _, err := pub.Resolve(ctx, key.PublicKey()); !errors.Is(err, dht.ErrClosed) {
		t.Errorf("resolve on a closed node: %v, want ErrClosed", err)
	}
}

// A node keeps its routing table in its NodesFile, and a second run joins
// through it with no bootstrap node at all.
func TestNodesFileWarmStart(t *testing.T) {
	net := localnet.ForTest(t, localnet.Config{Nodes: 12})
	ctx := ctxFor(t, 30*time.Second)
	file := filepath.Join(t.TempDir(), "nodes")
	first, err := net.Add(ctx, func(c *dht.Config) { c.NodesFile = file })
	if err != nil {
		t.Fatal(err)
	}
	key := newKey(t)
	if _, _, err := first.Publish(ctx, key, setRelease(key.PublicKey(), release(t, "stable", "1.0.0"))); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() < 38*dht.K {
		t.Fatalf("nodes file of %d bytes, want at least %d nodes", fi.Size(), dht.K)
	}

	second, err := dht.New(ctx, net.Config(func(c *dht.Config) {
		c.NodesFile = file
		c.Bootstrap = nil
		c.ReadOnly = true
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if n := second.Server().NumNodes(); n < dht.K {
		t.Fatalf("second run knows %d nodes, want %d or more", n, dht.K)
	}
	if _, _, err := second.Resolve(ctx, key.PublicKey()); err != nil {
		t.Fatal(err)
	}

	// A corrupt file is ignored, not fatal, when a bootstrap node is known.
	if err := os.WriteFile(file, []byte("not a node list"), 0o600); err != nil {
		t.Fatal(err)
	}
	third, err := dht.New(ctx, net.Config(func(c *dht.Config) { c.NodesFile = file; c.ReadOnly = true }))
	if err != nil {
		t.Fatal(err)
	}
	third.Close()
}

// A lookup leaves a node that does not answer behind after a wait set by
// the round trips of those that do (RFC 6298), not after QueryTimeout. Here
// three silent nodes (UDP sockets nobody reads) are the closest to the key
// in the routing tables of a publisher and of a resolver, with a
// QueryTimeout of 10 s: both ask the silent nodes, and both finish in a
// fraction of it, the record stored and found.
func TestLookupLeavesSilentNodesBehind(t *testing.T) {
	const queryTimeout = 10 * time.Second
	ctx := ctxFor(t, time.Minute)
	net := localnet.ForTest(t, localnet.Config{Nodes: 4, QueryTimeout: queryTimeout})
	key := newKey(t)
	target := record.Target(key.PublicKey())

	var silent []*silentNode
	for i := range 3 {
		id := target
		id[19] ^= byte(i + 1)
		silent = append(silent, newSilentNode(t, id))
	}
	client := func() *dht.Node {
		n, err := dht.New(ctx, net.Config(func(c *dht.Config) { c.ReadOnly = true }))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		for _, s := range silent {
			if err := n.Server().AddNode(s.info()); err != nil {
				t.Fatal(err)
			}
		}
		return n
	}
	asked := func(what string) {
		t.Helper()
		for i, s := range silent {
			if !s.asked() {
				t.Fatalf("%s did not ask silent node %d: the test proves nothing", what, i)
			}
		}
	}

	pub := client()
	start := time.Now()
	p, st, err := pub.Publish(ctx, key, setRelease(key.PublicKey(), release(t, "stable", "1.0.0")))
	took := time.Since(start)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	asked("the publish")
	if took > queryTimeout/2 {
		t.Errorf("the publish took %v with silent nodes in its table, QueryTimeout %v", took, queryTimeout)
	}
	t.Logf("publish: %v, stored on %d nodes", took.Round(time.Millisecond), st.Acked)

	res := client()
	start = time.Now()
	got, _, err := res.Resolve(ctx, key.PublicKey())
	took = time.Since(start)
	if err != nil || got.Seq != p.Seq {
		t.Fatalf("resolve: %v", err)
	}
	asked("the resolve")
	if took > queryTimeout/2 {
		t.Errorf("the resolve took %v with silent nodes in its table, QueryTimeout %v", took, queryTimeout)
	}
	t.Logf("resolve: %v", took.Round(time.Millisecond))
}

// silentNode is a DHT node that is gone: a UDP socket on 127.0.0.1 that
// takes queries and never answers.
type silentNode struct {
	conn *net.UDPConn
	id   krpc.ID
}

func newSilentNode(t *testing.T, id krpc.ID) *silentNode {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &silentNode{conn: conn, id: id}
}

func (s *silentNode) info() krpc.NodeInfo {
	a := s.conn.LocalAddr().(*net.UDPAddr)
	return krpc.NodeInfo{ID: s.id, Addr: krpc.NodeAddr{IP: a.IP.To4(), Port: a.Port}}
}

// asked reports whether a query has arrived since the last call, and
// drains what has.
func (s *silentNode) asked() bool {
	got := false
	buf := make([]byte, 2048)
	for {
		s.conn.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		if _, _, err := s.conn.ReadFrom(buf); err != nil {
			return got
		}
		got = true
	}
}
