package dht

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	peer_store "github.com/anacrolix/dht/v2/peer-store"
	"github.com/anacrolix/torrent/bencode"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
)

// Nodes list every IPv4 node again as ::ffff:a.b.c.d in their IPv6 list;
// usableNodes keeps each node once, in IPv4 form, and drops what the socket
// cannot reach.
func TestUsableNodesDeduplicates(t *testing.T) {
	id := func(b byte) krpc.ID { return krpc.ID{b} }
	v4 := krpc.NodeAddr{IP: net.IPv4(127, 0, 0, 1).To4(), Port: 1001}
	mapped := krpc.NodeAddr{IP: net.IPv4(127, 0, 0, 1).To16(), Port: 1001}
	other := krpc.NodeAddr{IP: net.IPv4(127, 0, 0, 1).To4(), Port: 1002}
	v6 := krpc.NodeAddr{IP: net.ParseIP("2001:db8::1"), Port: 1003}
	r := &krpc.Return{
		Nodes:  krpc.CompactIPv4NodeInfo{{ID: id(1), Addr: v4}, {ID: id(2), Addr: other}, {ID: id(9), Addr: v4}},
		Nodes6: krpc.CompactIPv6NodeInfo{{ID: id(1), Addr: mapped}, {ID: id(2), Addr: other}, {ID: id(3), Addr: v6}},
	}
	self := id(9)
	got := usableNodes(r, family{v4: true}, self)
	if len(got) != 2 {
		t.Fatalf("IPv4 socket: %d nodes %v, want 2 (ids 1 and 2)", len(got), got)
	}
	for _, ni := range got {
		if len(ni.Addr.IP) != net.IPv4len {
			t.Errorf("node %v not in IPv4 form", ni)
		}
	}
	if got := usableNodes(r, family{v4: true, v6: true}, self); len(got) != 3 {
		t.Fatalf("dual-stack socket: %d nodes %v, want 3", len(got), got)
	}
}

func TestDecodeString(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"0:", "", true},
		{"5:hello", "hello", true},
		{"5:hell", "", false},
		{"5:hello!", "", false},
		{"05:hello", "", false},
		{"i5e", "", false},
		{"l5:helloe", "", false},
		{"-1:", "", false},
		{":", "", false},
		{"99999:x", "", false},
	} {
		got, err := decodeString([]byte(tc.in))
		if (err == nil) != tc.ok || string(got) != tc.want {
			t.Errorf("decodeString(%q) = %q, %v", tc.in, got, err)
		}
	}
}

func FuzzDecodeString(f *testing.F) {
	f.Add([]byte("5:hello"))
	f.Add([]byte("996:"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decodeString(b)
		if err == nil && len(v) > len(b) {
			t.Fatalf("decoded %d bytes from %d", len(v), len(b))
		}
	})
}

// anacrolix's in-memory peer store keys peers by IP alone: on one host
// every announce replaces the last. This one keys them by IP and port.
func TestPeerStoreKeysByPort(t *testing.T) {
	now := time.Unix(1000, 0)
	s := newPeerStore(func() time.Time { return now })
	var ih peer_store.InfoHash
	ih[0] = 1
	for port := 1001; port <= 1003; port++ {
		s.AddPeer(ih, krpc.NodeAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		now = now.Add(time.Second)
	}
	// The same peer again, in IPv4-mapped form: still one peer.
	s.AddPeer(ih, krpc.NodeAddr{IP: net.IPv4(127, 0, 0, 1).To16(), Port: 1003})
	got := s.GetPeers(ih)
	if len(got) != 3 {
		t.Fatalf("%d peers %v, want 3", len(got), got)
	}
	if got[0].Port != 1003 {
		t.Errorf("first peer %v, want the most recent (port 1003)", got[0])
	}
	if n := len(s.GetPeers(peer_store.InfoHash{})); n != 0 {
		t.Errorf("%d peers for an infohash nobody announced", n)
	}
	now = now.Add(peerLifetime - time.Second)
	if got := s.GetPeers(ih); len(got) != 1 || got[0].Port != 1003 {
		t.Errorf("after %v: %v, want only the last announce", peerLifetime, got)
	}
}

func TestPeerStoreBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	s := newPeerStore(func() time.Time { return now })
	var ih peer_store.InfoHash
	for i := range maxPeersPerInfohash + 10 {
		s.AddPeer(ih, krpc.NodeAddr{IP: net.IPv4(10, 0, byte(i>>8), byte(i)), Port: 6881})
		now = now.Add(time.Millisecond)
	}
	if n := len(s.m[ih]); n != maxPeersPerInfohash {
		t.Fatalf("%d peers kept, want %d", n, maxPeersPerInfohash)
	}
	if _, ok := s.m[ih][netip.MustParseAddrPort("10.0.0.0:6881")]; ok {
		t.Error("the oldest peer was kept")
	}
	if n := len(s.GetPeers(ih)); n != maxPeersReturned {
		t.Errorf("%d peers returned, want %d", n, maxPeersReturned)
	}
}

// One host (one IP) holds at most maxPortsPerHost peers of an infohash: a
// host announcing more ports replaces its newest, so its first ones and
// the other hosts' peers stay.
func TestPeerStoreHostShare(t *testing.T) {
	now := time.Unix(1000, 0)
	s := newPeerStore(func() time.Time { return now })
	var ih peer_store.InfoHash
	other := krpc.NodeAddr{IP: net.IPv4(10, 0, 0, 2), Port: 6881}
	s.AddPeer(ih, other)
	last := 3 * maxPortsPerHost
	for port := 1; port <= last; port++ {
		now = now.Add(time.Millisecond)
		s.AddPeer(ih, krpc.NodeAddr{IP: net.IPv4(10, 0, 0, 1), Port: port})
	}
	ofHost := 0
	for ap := range s.m[ih] {
		if ap.Addr() == netip.MustParseAddr("10.0.0.1") {
			ofHost++
			if p := int(ap.Port()); p >= maxPortsPerHost && p != last {
				t.Errorf("kept %v, neither among the host's first %d nor its last", ap, maxPortsPerHost-1)
			}
		}
	}
	if ofHost != maxPortsPerHost {
		t.Errorf("the host holds %d peers, want %d", ofHost, maxPortsPerHost)
	}
	if _, ok := s.m[ih][addrPort(other.IP, other.Port)]; !ok {
		t.Error("another host's peer was pushed out")
	}
	if s.total != maxPortsPerHost+1 {
		t.Errorf("total %d, want %d", s.total, maxPortsPerHost+1)
	}
}

// A seeder that announces again every 15 minutes stays findable, first in
// get_peers answers, while hundreds of fetches on the same host (one
// machine, or one NAT) announce once each and exit; and in a torrent at
// its bound, a peer that announced again outlives newer one-time peers.
// Before, a host's 64 newest peers were kept and answered first, so 64
// exited fetches hid a seeder on their machine until it announced again.
func TestPeerStoreKeepsPeersThatAnnounceAgain(t *testing.T) {
	now := time.Unix(1000, 0)
	s := newPeerStore(func() time.Time { return now })
	var ih peer_store.InfoHash
	host := net.IPv4(127, 0, 0, 1)
	seeder := krpc.NodeAddr{IP: host, Port: 7000}
	s.AddPeer(ih, seeder)
	for i := range 600 {
		now = now.Add(3 * time.Second)
		s.AddPeer(ih, krpc.NodeAddr{IP: host, Port: 10000 + i})
		if i%300 == 150 {
			s.AddPeer(ih, seeder) // every 15 minutes
		}
	}
	got := s.GetPeers(ih)
	if len(got) != maxPortsPerHost || got[0].Port != seeder.Port {
		t.Fatalf("%d peers, first %v; want %d, the seeder (port %d) first", len(got), got[0], maxPortsPerHost, seeder.Port)
	}

	// A torrent at its bound, from distinct hosts: the peers that
	// announced again stay, though they announced before the one-time ones.
	s = newPeerStore(func() time.Time { return now })
	for i := range 10 {
		s.AddPeer(ih, krpc.NodeAddr{IP: net.IPv4(10, 9, 0, byte(i)), Port: 6881})
		now = now.Add(time.Minute)
		s.AddPeer(ih, krpc.NodeAddr{IP: net.IPv4(10, 9, 0, byte(i)), Port: 6881})
	}
	for i := range 2 * maxPeersPerInfohash {
		now = now.Add(time.Millisecond)
		s.AddPeer(ih, krpc.NodeAddr{IP: net.IPv4(10, 10, byte(i>>8), byte(i)), Port: 6881})
	}
	for i := range 10 {
		if _, ok := s.m[ih][netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 9, 0, byte(i)}), 6881)]; !ok {
			t.Fatalf("peer 10.9.0.%d, which announced again, was dropped", i)
		}
	}
	if n := len(s.m[ih]); n != maxPeersPerInfohash {
		t.Errorf("%d peers kept, want %d", n, maxPeersPerInfohash)
	}
}

// The store holds at most maxPeers peers in all: a new one is refused when
// it is full, until peers expire.
func TestPeerStoreTotalBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	s := newPeerStore(func() time.Time { return now })
	const perInfohash = 50
	var ih peer_store.InfoHash
	for i := range maxPeers / perInfohash {
		ih[0], ih[1] = byte(i>>8), byte(i)
		for j := range perInfohash {
			s.AddPeer(ih, krpc.NodeAddr{IP: net.IPv4(10, 1, byte(i%20), byte(j)), Port: 6881})
		}
	}
	if s.total != maxPeers {
		t.Fatalf("total %d, want %d", s.total, maxPeers)
	}
	late := peer_store.InfoHash{0xff, 0xff}
	s.AddPeer(late, krpc.NodeAddr{IP: net.IPv4(10, 2, 0, 1), Port: 6881})
	if len(s.GetPeers(late)) != 0 || s.total != maxPeers {
		t.Fatalf("a peer beyond maxPeers was taken: total %d", s.total)
	}
	now = now.Add(peerLifetime)
	s.AddPeer(late, krpc.NodeAddr{IP: net.IPv4(10, 2, 0, 1), Port: 6881})
	if len(s.GetPeers(late)) != 1 || s.total != 1 {
		t.Fatalf("after the others expired: %d peers of the new infohash, total %d; want 1, 1", len(s.GetPeers(late)), s.total)
	}
}

func TestBucket(t *testing.T) {
	var self krpc.ID
	self[0] = 0b1010_0000
	for i := range 160 {
		id := randomIDInBucket(self, i)
		if got := Bucket(self, id); got != i {
			t.Fatalf("randomIDInBucket(%d) is in bucket %d", i, got)
		}
	}
	if Bucket(self, self) != 160 {
		t.Error("Bucket(self, self) != 160")
	}
}

// anacrolix's table maintainer, started on a node with an empty routing
// table (a bootstrap node nobody joined yet), leaks a traversal goroutine
// at each of its rounds; it is started only once the table holds a node.
func TestLoneBootstrapNodeLeaksNothing(t *testing.T) {
	defer func(d time.Duration) { maintainAfter = d }(maintainAfter)
	maintainAfter = time.Millisecond
	ctx := context.Background()
	b, err := New(ctx, Config{Listen: "127.0.0.1:0", Bootstrapper: true})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "traversal.(*Operation).run") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a traversal goroutine outlived the node:\n%s", stacks)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FuzzGetReply feeds whole KRPC datagrams, as a node on the network sends
// them, through what a lookup does with an answer to get: the nodes it
// names and the mutable item it holds. Nothing panics, every node kept is
// one the socket can reach and is kept once, and an item is taken only when
// it is the key's, whole and validly signed.
func FuzzGetReply(f *testing.F) {
	key, err := signer.NewPrivateKey(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		f.Fatal(err)
	}
	p, err := record.Sign(key, 1700000000000000, []byte("a packet"))
	if err != nil {
		f.Fatal(err)
	}
	seq := p.Seq
	token := "tok"
	reply := krpc.Msg{T: "aa", Y: "r", R: &krpc.Return{
		ID: krpc.ID{1}, Token: &token,
		Nodes: krpc.CompactIPv4NodeInfo{{ID: krpc.ID{2}, Addr: krpc.NodeAddr{IP: net.IPv4(127, 0, 0, 1).To4(), Port: 6881}}},
		Bep44Return: krpc.Bep44Return{
			V: bencode.Bytes(strconv.Itoa(len(p.Packet)) + ":" + string(p.Packet)),
			K: key.PublicKey(), Sig: p.Sig, Seq: &seq,
		},
	}}
	b, err := bencode.Marshal(reply)
	if err != nil {
		f.Fatal(err)
	}
	if _, err := itemPacket(key.PublicKey(), reply.R); err != nil {
		f.Fatalf("the genuine answer is refused: %v", err)
	}
	f.Add(b)
	f.Add([]byte("d1:rd2:id20:aaaaaaaaaaaaaaaaaaaa1:v3:abce1:t2:aa1:y1:re"))
	f.Add([]byte("d1:rd2:id20:aaaaaaaaaaaaaaaaaaaa5:nodes26:bbbbbbbbbbbbbbbbbbbb\x7f\x00\x00\x01\x1a\xe1e1:t2:aa1:y1:re"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m krpc.Msg
		if bencode.Unmarshal(b, &m) != nil || m.R == nil {
			return
		}
		for _, fam := range []family{{v4: true}, {v6: true}, {v4: true, v6: true}} {
			type node struct {
				id krpc.ID
				ap netip.AddrPort
			}
			seen := map[node]bool{}
			for _, ni := range usableNodes(m.R, fam, krpc.ID{1}) {
				ap := addrPort(ni.Addr.IP, ni.Addr.Port)
				if !fam.reaches(ap) || ni.ID == (krpc.ID{1}) {
					t.Fatalf("kept node %v, which %+v cannot reach or is this node", ni, fam)
				}
				k := node{ni.ID, ap}
				if seen[k] {
					t.Fatalf("node %v kept twice", ni)
				}
				seen[k] = true
			}
		}
		if m.R.V == nil {
			return
		}
		got, err := itemPacket(key.PublicKey(), m.R)
		if err != nil {
			return
		}
		if got.Key != key.PublicKey() || got.Verify() != nil || len(got.Packet) > record.MaxPacketSize {
			t.Fatalf("took an item that is not the key's valid packet: %+v", got)
		}
	})
}

// One host holds at most maxPeersOfHost peers over every infohash: a host
// announcing itself for ever more torrents does not fill the store for
// the others.
func TestPeerStoreHostTotal(t *testing.T) {
	now := time.Unix(1000, 0)
	s := newPeerStore(func() time.Time { return now })
	var ih peer_store.InfoHash
	for i := range 2 * maxPeersOfHost {
		ih[0], ih[1] = byte(i>>8), byte(i)
		s.AddPeer(ih, krpc.NodeAddr{IP: net.IPv4(203, 0, 113, 7), Port: 6881})
	}
	if s.total != maxPeersOfHost {
		t.Fatalf("one host holds %d peers, want %d", s.total, maxPeersOfHost)
	}
	// Its neighbour in the /24 is the same host; another network is not.
	s.AddPeer(ih, krpc.NodeAddr{IP: net.IPv4(203, 0, 113, 8), Port: 6881})
	s.AddPeer(ih, krpc.NodeAddr{IP: net.IPv4(198, 51, 100, 1), Port: 6881})
	if got := s.GetPeers(ih); len(got) != 1 || !got[0].IP.Equal(net.IPv4(198, 51, 100, 1)) {
		t.Errorf("peers of the last infohash: %v, want only the other network's", got)
	}
}

// The per-host buckets of the rate limits stay under their bound however
// many hosts send: beyond it, new hosts share one bucket until idle ones
// leave.
func TestBucketsBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newBuckets(20, 50, 100)
	for i := range 10000 {
		ap := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, byte(i >> 8), byte(i), 1}), 6881)
		b.allow(netHost(ap), 1, now)
	}
	if n := len(b.m); n > 100+1 {
		t.Fatalf("%d buckets after 10,000 hosts, want at most 100 and the shared one", n)
	}
	// The shared bucket is spent: a new host waits, as one host would.
	if b.allow(host{prefix: netip.MustParsePrefix("203.0.113.0/24")}, 1, now) {
		t.Error("a new host got a token from the spent shared bucket")
	}
	// Once the others are idle (refilled), a new host has a bucket of its own.
	now = now.Add(10 * time.Second)
	if !b.allow(host{prefix: netip.MustParsePrefix("203.0.113.0/24")}, 50, now) {
		t.Error("a new host, once the others were idle, got no full bucket")
	}
}

// What counts as one host: a public IPv4 /24, a public IPv6 /64, a
// private, link-local or loopback address, a port of 127.0.0.1 or ::1.
func TestHosts(t *testing.T) {
	same := [][2]string{
		{"203.0.113.7:1", "203.0.113.200:2"},
		{"[2001:db8:1:2::1]:1", "[2001:db8:1:2:ffff::9]:2"},
		{"[::ffff:203.0.113.7]:1", "203.0.113.9:1"},
		{"10.1.2.3:1", "10.1.2.3:2"},
		{"127.5.0.1:1", "127.5.0.1:2"},
		{"127.0.0.1:7", "127.0.0.1:7"},
	}
	differ := [][2]string{
		{"203.0.113.7:1", "203.0.114.7:1"},
		{"[2001:db8:1:2::1]:1", "[2001:db8:1:3::1]:1"},
		{"10.1.2.3:1", "10.1.2.4:1"},
		{"192.168.1.2:1", "192.168.1.3:1"},
		{"127.5.0.1:1", "127.5.0.2:1"},
		{"127.0.0.1:7", "127.0.0.1:8"},
		{"[::1]:7", "[::1]:8"},
	}
	for _, p := range same {
		if a, b := netHost(netip.MustParseAddrPort(p[0])), netHost(netip.MustParseAddrPort(p[1])); a != b {
			t.Errorf("%s and %s: hosts %v and %v, want one", p[0], p[1], a, b)
		}
	}
	for _, p := range differ {
		if a, b := netHost(netip.MustParseAddrPort(p[0])), netHost(netip.MustParseAddrPort(p[1])); a == b {
			t.Errorf("%s and %s: one host %v, want two", p[0], p[1], a)
		}
	}
}

// TestLookupFallsBackToBootstrap: when every node of the routing table is
// silent (stale entries after a sleep or a change of network), a lookup
// asks the bootstrap nodes before it says that no node answered.
func TestLookupFallsBackToBootstrap(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := New(ctx, Config{Listen: "127.0.0.1:0", Bootstrapper: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// n starts with no join (a bootstrap node of its own) and a table of
	// silent nodes only: sockets that never answer.
	n, err := New(ctx, Config{Listen: "127.0.0.1:0", Bootstrapper: true, QueryTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	for i := range 4 {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ap := udpAddrPort(c.LocalAddr())
		if err := n.srv.AddNode(krpc.NodeInfo{ID: krpc.ID{byte(i + 1), 7}, Addr: krpc.NodeAddr{IP: ap.Addr().AsSlice(), Port: int(ap.Port())}}); err != nil {
			t.Fatal(err)
		}
	}
	key := signer.PublicKey{1}
	if _, st, err := n.Resolve(ctx, key); !errors.Is(err, ErrNoNodes) || st.Queried == 0 {
		t.Fatalf("resolve with a silent table and no bootstrap node: %v (%+v), want ErrNoNodes after querying the table", err, st)
	} else if !strings.Contains(err.Error(), "none answered in time") {
		t.Errorf("error %q does not say the nodes were silent", err)
	}
	n.bootstrap, err = resolveHostPorts(ctx, []string{b.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	_, st, err := n.Resolve(ctx, key)
	if !errors.Is(err, ErrNotFound) || st.Answered == 0 {
		t.Fatalf("resolve with a silent table and a live bootstrap node: %v (%+v), want ErrNotFound from the bootstrap node", err, st)
	}
}

// The closest nodes remembered for PeersAgain are bounded: one list of at
// most K per infohash, for maxNear infohashes, each for nearLife.
func TestNearNodesBounded(t *testing.T) {
	var nn nearNodes
	now := time.Now()
	closest := make([]closeNode, K)
	for i := range closest {
		closest[i].addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), 6881)
	}
	for i := range maxNear + 100 {
		var ih record.Infohash
		ih[0], ih[1] = byte(i>>8), byte(i)
		nn.set(ih, closest, now)
	}
	if len(nn.m) != maxNear {
		t.Fatalf("%d infohashes remembered, want %d", len(nn.m), maxNear)
	}
	var ih record.Infohash
	last := maxNear + 99 // the last set is there
	ih[0], ih[1] = byte(last>>8), byte(last)
	if got, all := nn.get(ih, now, 0); len(got) != K || !all {
		t.Fatalf("get = %v, want the %d nodes set", got, K)
	}
	// A few at a time, in turn: every node once in K/2 asks of 2.
	seen := make(map[netip.AddrPort]int)
	for range K / 2 {
		got, all := nn.get(ih, now, 2)
		if len(got) != 2 || all {
			t.Fatalf("get of 2 = %v (all %v)", got, all)
		}
		for _, ap := range got {
			seen[ap]++
		}
	}
	if len(seen) != K {
		t.Fatalf("%d asks of 2 named %d distinct nodes, want %d: %v", K/2, len(seen), K, seen)
	}
	if got, _ := nn.get(ih, now.Add(nearLife+time.Second), 0); got != nil {
		t.Fatalf("get after nearLife = %v, want none", got)
	}
	nn.set(ih, nil, now) // a lookup that found no node forgets the old ones
	if got, _ := nn.get(ih, now, 0); got != nil {
		t.Fatalf("get after an empty lookup = %v, want none", got)
	}
}
