package dht_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha1"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/bep44"
	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"
	"github.com/relay-sh/relay/dht"
	"github.com/relay-sh/relay/dht/localnet"
	"github.com/relay-sh/relay/record"
)

// ring is a set of hostile nodes on one address, with IDs next to a
// target: each answers every query, names only the others, hands out
// write tokens, acknowledges every put and announce without storing, and
// answers get with the item it is given (an older packet).
type ring struct {
	nodes []*net.UDPConn
	ids   []krpc.ID
	item  krpc.Bep44Return
	// extra are nodes every answer names besides the ring's own.
	extra krpc.CompactIPv4NodeInfo
	// peers are the peers a get_peers answer names.
	peers []krpc.NodeAddr
	// ip, when set, gives node i an address of its own (a host of its
	// own) instead of startRing's; names, when set, gives the nodes node
	// i's answers name instead of the ring's others.
	ip    func(i int) string
	names func(r *ring, i int) krpc.CompactIPv4NodeInfo
	// asked holds, for each address and method, the ring's nodes it
	// queried.
	mu    sync.Mutex
	asked map[asker]map[int]bool
	wg    sync.WaitGroup
}

// startRing starts count nodes on ip next to target; configure, if not
// nil, sets what they answer before they start.
func startRing(t *testing.T, ip string, target krpc.ID, count int, configure func(*ring)) *ring {
	r := &ring{asked: make(map[asker]map[int]bool)}
	if configure != nil {
		configure(r)
	}
	for i := range count {
		at := ip
		if r.ip != nil {
			at = r.ip(i)
		}
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(at), 0)))
		if err != nil {
			t.Fatal(err)
		}
		// Node i is at distance i+1 from target.
		id := target
		id[18] ^= byte((i + 1) >> 8)
		id[19] ^= byte(i + 1)
		r.nodes = append(r.nodes, c)
		r.ids = append(r.ids, id)
	}
	for i := range r.nodes {
		r.wg.Go(func() { r.serve(i) })
	}
	t.Cleanup(func() {
		for _, c := range r.nodes {
			c.Close()
		}
		r.wg.Wait()
	})
	return r
}

// others returns the ring's nodes but i, as a KRPC node list.
func (r *ring) others(i int) krpc.CompactIPv4NodeInfo {
	var out krpc.CompactIPv4NodeInfo
	for j := range r.nodes {
		if j != i {
			out = append(out, r.info(j))
		}
	}
	return out
}

// info is node j as a KRPC node list names it.
func (r *ring) info(j int) krpc.NodeInfo {
	ap := r.nodes[j].LocalAddr().(*net.UDPAddr).AddrPort()
	return krpc.NodeInfo{ID: r.ids[j], Addr: krpc.NodeAddr{IP: ap.Addr().AsSlice(), Port: int(ap.Port())}}
}

// asker is who asked the ring, and what.
type asker struct {
	from netip.AddrPort
	q    string
}

// askedBy returns how many of the ring's nodes a sent a query q.
func (r *ring) askedBy(a netip.AddrPort, q string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.asked[asker{a, q}])
}

func (r *ring) serve(i int) {
	c := r.nodes[i]
	buf := make([]byte, 4096)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		var q krpc.Msg
		if bencode.Unmarshal(buf[:n], &q) != nil || q.Y != "q" {
			continue
		}
		r.mu.Lock()
		k := asker{from, q.Q}
		if r.asked[k] == nil {
			r.asked[k] = make(map[int]bool)
		}
		r.asked[k][i] = true
		r.mu.Unlock()
		ret := krpc.Return{ID: r.ids[i]}
		switch q.Q {
		case "find_node", "get_peers", "get":
			tok := "tok"
			ret.Token = &tok
			if r.names != nil {
				ret.Nodes = r.names(r, i)
			} else {
				ret.Nodes = r.others(i)
			}
			ret.Nodes = append(ret.Nodes, r.extra...)
			if q.Q == "get" {
				ret.Bep44Return = r.item
			}
			if q.Q == "get_peers" {
				ret.Values = r.peers
			}
		}
		if b, err := bencode.Marshal(krpc.Msg{T: q.T, Y: "r", R: &ret}); err == nil {
			c.WriteToUDPAddrPort(b, from)
		}
	}
}

// join makes the ring known to every node: each of its nodes (or those
// of which) pings them (they enter the tables), then every node refreshes
// (it pings them back; they answer and are good, handed out to others).
func (r *ring) join(t *testing.T, ln *localnet.Net, which ...int) {
	ctx := ctxFor(t, 30*time.Second)
	if which == nil {
		which = make([]int, len(r.nodes))
		for i := range which {
			which[i] = i
		}
	}
	for _, i := range which {
		for _, n := range ln.All() {
			r.nodes[i].WriteToUDPAddrPort(query("ping", "p", map[string]any{"id": string(r.ids[i][:])}), n.Addr())
		}
	}
	time.Sleep(200 * time.Millisecond)
	for _, n := range ln.All() {
		n.Refresh(ctx)
	}
}

// Eight node IDs on one address, next to a key's target, that answer
// every query, name only each other and acknowledge puts without storing
// once took every place of a publish's closest set: the publish reported
// "acked by 8" while no honest node held the record, and a fresh resolver
// got the old release. A lookup's closest set now holds one node per
// host: the publish reaches the honest nodes, says how many distinct
// hosts took it, and a fresh resolver gets the new record.
func TestNoCaptureByOneHost(t *testing.T) {
	ln := localnet.ForTest(t, localnet.Config{Nodes: 16, Spread: true})
	ctx := ctxFor(t, 60*time.Second)
	key := newKey(t)
	pk := key.PublicKey()
	old, _, err := ln.Nodes[0].Publish(ctx, key, setRelease(pk, release(t, "stable", "1.0.0")))
	if err != nil {
		t.Fatal(err)
	}
	r := startRing(t, "127.66.0.1", record.Target(pk), 8, func(r *ring) {
		r.item = krpc.Bep44Return{V: bencodeString(old.Packet), K: pk, Sig: old.Sig, Seq: &old.Seq}
	})
	r.join(t, ln)

	pub, err := ln.Add(ctx, func(c *dht.Config) { c.ReadOnly = true })
	if err != nil {
		t.Fatal(err)
	}
	p, st, err := pub.Publish(ctx, key, setRelease(pk, release(t, "stable", "2.0.0")))
	if err != nil {
		t.Fatal(err)
	}
	// Which honest nodes hold the new packet, asked one by one.
	asker := listenOn(t, "127.67.0.1")
	honest := 0
	target := record.Target(pk)
	for _, n := range ln.All() {
		m := asker.ask(n.Addr(), "get", map[string]any{"target": string(target[:])}, 2*time.Second)
		if m != nil && m.R != nil && m.R.Seq != nil && *m.R.Seq == p.Seq {
			honest++
		}
	}
	t.Logf("publish: acked by %d hosts; %d honest nodes hold it", st.Acked, honest)
	if honest < dht.K/2 {
		t.Errorf("%d honest nodes hold the new packet, want at least %d", honest, dht.K/2)
	}
	if st.Acked > honest+1 {
		t.Errorf("publish reported %d hosts, %d honest nodes hold it: the ring on one address counted more than once", st.Acked, honest)
	}
	reader, err := ln.Add(ctx, func(c *dht.Config) { c.ReadOnly = true })
	if err != nil {
		t.Fatal(err)
	}
	got, rst, err := reader.Resolve(ctx, pk)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fresh resolver: seq %d from %d hosts (%d older)", got.Seq, rst.Held, rst.Older)
	if got.Seq != p.Seq {
		t.Errorf("a fresh resolver got seq %d, want the new %d", got.Seq, p.Seq)
	}
}

// 10,500 signed puts from one address, with salts ground so that each
// item lands nearer the node's ID than a real record, once evicted the
// real record (resolve found nothing) and made the node refuse the next
// real publish. A full store now gives way only to hosts that hold less:
// the flooder displaces its own items. (The store here holds 32 items,
// and the flood is 80 puts paced under the node's query rate, so that
// every put is served.)
func TestItemStoreFairUnderFlood(t *testing.T) {
	ctx := ctxFor(t, 60*time.Second)
	const max = 32
	store := startNode(t, "127.0.0.1", func(c *dht.Config) { c.MaxItems = max })
	client := func() *dht.Node {
		n, err := dht.New(ctx, dht.Config{Listen: "127.0.0.1:0", Bootstrap: []string{store.Addr().String()}, ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	pub := client()
	real := newKey(t)
	if _, _, err := pub.Publish(ctx, real, setRelease(real.PublicKey(), release(t, "stable", "1.0.0"))); err != nil {
		t.Fatal(err)
	}

	a := listenOn(t, "127.68.0.1")
	m := a.ask(store.Addr(), "get", map[string]any{"target": a.id}, 2*time.Second)
	if m == nil || m.R == nil || m.R.Token == nil {
		t.Fatal("no token from the storing node")
	}
	tok := *m.R.Token
	id := store.ID()
	_, priv, _ := ed25519.GenerateKey(nil)
	var k [32]byte
	copy(k[:], priv.Public().(ed25519.PublicKey))
	acked := 0
	for i := range 2 * max {
		// A salt whose target shares its first 12 bits with the node's
		// ID: nearer than any record not ground so.
		var salt []byte
		for n := 0; ; n++ {
			salt = []byte(strconv.Itoa(i) + "." + strconv.Itoa(n))
			h := sha1.Sum(append(k[:], salt...))
			if h[0] == id[0] && h[1]>>4 == id[1]>>4 {
				break
			}
		}
		it, err := bep44.NewItem("flood", salt, 1, 0, priv)
		if err != nil {
			t.Fatal(err)
		}
		reply := a.ask(store.Addr(), "put", map[string]any{"token": tok, "k": string(k[:]), "salt": string(salt),
			"seq": 1, "sig": string(it.Sig[:]), "v": "flood"}, 2*time.Second)
		if reply != nil && reply.R != nil {
			acked++
		}
		time.Sleep(70 * time.Millisecond)
	}
	t.Logf("the flood: %d of %d puts acknowledged", acked, 2*max)
	if acked < max {
		t.Fatalf("%d of the flood's puts stored, want at least %d (the store full of them)", acked, max)
	}
	reader := client()
	if _, _, err := reader.Resolve(ctx, real.PublicKey()); err != nil {
		t.Errorf("the real record after the flood: %v", err)
	}
	second := newKey(t)
	if _, _, err := pub.Publish(ctx, second, setRelease(second.PublicKey(), release(t, "stable", "1.0.0"))); err != nil {
		t.Errorf("a real publish after the flood: %v", err)
	}
	if _, _, err := reader.Resolve(ctx, second.PublicKey()); errors.Is(err, dht.ErrNotFound) {
		t.Errorf("the second real record: %v", err)
	}
}

// A node that answers every query with 140 made-up nodes next to the
// target (nothing listens at their addresses, all on one address) once
// made a lookup query, and wait for, every one of them. A lookup now takes
// at most K nodes of an answer's list, one of each host.
func TestLookupBoundedByHostileAnswers(t *testing.T) {
	ln := localnet.ForTest(t, localnet.Config{Nodes: 8, Spread: true})
	ctx := ctxFor(t, 2*time.Minute)
	key := newKey(t)
	pk := key.PublicKey()
	if _, _, err := ln.Nodes[0].Publish(ctx, key, setRelease(pk, release(t, "stable", "1.0.0"))); err != nil {
		t.Fatal(err)
	}
	target := record.Target(pk)
	var made krpc.CompactIPv4NodeInfo
	for i := range 140 {
		id := target
		id[18], id[19] = byte(i>>8)^0x80, byte(i)
		made = append(made, krpc.NodeInfo{ID: id, Addr: krpc.NodeAddr{IP: net.IPv4(127, 71, 0, 1).To4(), Port: 20000 + i}})
	}
	r := startRing(t, "127.70.0.1", target, 1, func(r *ring) { r.extra = made })
	r.join(t, ln)
	reader, err := ln.Add(ctx, func(c *dht.Config) { c.ReadOnly = true })
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, st, err := reader.Resolve(ctx, pk)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("resolve: %d nodes queried, %d answered, in %v", st.Queried, st.Answered, time.Since(start).Round(time.Millisecond))
	if st.Queried > 40 {
		t.Errorf("a resolve queried %d nodes, most of them made up by one hostile answer", st.Queried)
	}
}

// A chain of 1,000 hostile nodes, each on a host of its own, each answering
// every query by naming the eight nodes next closer to the target, once
// made a lookup ask every one of them (the chain could have gone on until
// the lookup's deadline, one query after another within the node's send
// budget). A lookup now asks at most 200 nodes (lookup.go's maxQueries)
// and ends with the closest that answered.
func TestLookupQueriesCapped(t *testing.T) {
	ln := localnet.ForTest(t, localnet.Config{Nodes: 8, Spread: true})
	ctx := ctxFor(t, 2*time.Minute)
	pk := newKey(t).PublicKey()
	const chain = 1000
	r := startRing(t, "", record.Target(pk), chain, func(r *ring) {
		r.ip = func(i int) string { return hostIP(90, i) }
		// Node i is at distance i+1 from the target: it names nodes
		// i-1 to i-8, each closer.
		r.names = func(r *ring, i int) krpc.CompactIPv4NodeInfo {
			var out krpc.CompactIPv4NodeInfo
			for j := i - 1; j >= max(0, i-dht.K); j-- {
				out = append(out, r.info(j))
			}
			return out
		}
	})
	// Only the farthest node introduces itself: the lookup starts the
	// chain at its far end.
	r.join(t, ln, chain-1)
	reader, err := ln.Add(ctx, func(c *dht.Config) { c.ReadOnly = true })
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, st, err := reader.Resolve(ctx, pk)
	if err != nil && !errors.Is(err, dht.ErrNotFound) {
		t.Fatal(err)
	}
	asked := r.askedBy(reader.Addr(), "get")
	t.Logf("resolve: %d nodes queried (%d of the chain asked for the item), %d answered, in %v: %v",
		st.Queried, asked, st.Answered, time.Since(start).Round(time.Millisecond), err)
	if asked == 0 {
		t.Fatal("the resolve never reached the chain")
	}
	if st.Queried > 200 || asked > 200 {
		t.Errorf("a resolve queried %d nodes, %d of them the hostile chain's, want at most 200", st.Queried, asked)
	}
}

// A node that answers get_peers with 300 made-up peers gets at most 100 of
// them into what Peers returns.
func TestPeersBoundedFromHostileAnswers(t *testing.T) {
	ln := localnet.ForTest(t, localnet.Config{Nodes: 4, Spread: true})
	ctx := ctxFor(t, time.Minute)
	var ih record.Infohash
	rand.Read(ih[:])
	r := startRing(t, "127.72.0.1", krpc.ID(ih), 1, func(r *ring) {
		for i := range 300 {
			r.peers = append(r.peers, krpc.NodeAddr{IP: net.IPv4(198, 51, byte(i>>8), byte(i)).To4(), Port: 6881})
		}
	})
	r.join(t, ln)
	reader, err := ln.Add(ctx, func(c *dht.Config) { c.ReadOnly = true })
	if err != nil {
		t.Fatal(err)
	}
	peers, err := reader.Peers(ctx, ih)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d peers found", len(peers))
	if len(peers) > 100 {
		t.Errorf("%d peers taken from one hostile answer, want at most 100", len(peers))
	}
}

// TestSlowHonestNodesKeepTheirPlaces: the same ring answers at once while
// every honest node's answer reaches the publisher 700 ms late, past the
// wait its round-trip estimate (set by the ring) allows. A lookup that
// gave up on a node at that wait kept the ring's one place and nothing
// else: the publish was acked by one host and no honest node held the
// record. Late answers are still taken, and the lookup waits for them
// while it has fewer than k nodes.
func TestSlowHonestNodesKeepTheirPlaces(t *testing.T) {
	ln := localnet.ForTest(t, localnet.Config{Nodes: 12, Spread: true})
	ctx := ctxFor(t, 60*time.Second)
	key := newKey(t)
	pk := key.PublicKey()
	r := startRing(t, "127.69.0.1", record.Target(pk), 8, nil)
	r.join(t, ln)
	ringAddr := netip.MustParseAddr("127.69.0.1")
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 70, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	// The honest nodes turn slow once the publisher has joined: its
	// round-trip estimate is of fast answers then, as on a machine whose
	// load rose.
	var late atomic.Bool
	slow := newLateConn(conn, 700*time.Millisecond, func(from netip.Addr) bool { return late.Load() && from != ringAddr })
	t.Cleanup(func() { slow.Close() })
	pub, err := ln.Add(ctx, func(c *dht.Config) {
		c.Conn = slow
		c.ReadOnly = true
		c.QueryTimeout = 5 * time.Second // the full wait; the short one is the estimate's
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := pub.Resolve(ctx, pk); !errors.Is(err, dht.ErrNotFound) {
		t.Fatalf("resolve before any publish: %v, want ErrNotFound", err) // and the estimate learns the ring
	}
	late.Store(true)
	p, st, err := pub.Publish(ctx, key, setRelease(pk, release(t, "stable", "1.0.0")))
	if err != nil {
		t.Fatal(err)
	}
	asker := listenOn(t, "127.71.0.1")
	target := record.Target(pk)
	honest := 0
	for _, n := range ln.All() {
		m := asker.ask(n.Addr(), "get", map[string]any{"target": string(target[:])}, 2*time.Second)
		if m != nil && m.R != nil && m.R.Seq != nil && *m.R.Seq == p.Seq {
			honest++
		}
	}
	t.Logf("publish: %d nodes queried, %d answered, %d refused; acked by %d hosts; %d honest nodes hold it", st.Queried, st.Answered, st.Refused, st.Acked, honest)
	if honest < dht.K/2 {
		t.Errorf("%d honest nodes hold the packet, want at least %d: the slow honest nodes lost their places to the fast ring", honest, dht.K/2)
	}
}

// lateConn is a packet connection that hands over the packets of the
// senders slow picks delay after they arrived, the others at once: a
// path to some nodes that is slower than to the rest.
type lateConn struct {
	net.PacketConn
	in   chan lateDatagram
	done chan struct{}
	wg   sync.WaitGroup
}

type lateDatagram struct {
	b    []byte
	from net.Addr
	at   time.Time
}

func newLateConn(c net.PacketConn, delay time.Duration, slow func(netip.Addr) bool) *lateConn {
	l := &lateConn{PacketConn: c, in: make(chan lateDatagram, 1024), done: make(chan struct{})}
	held := make(chan lateDatagram, 1024)
	l.wg.Go(func() {
		defer close(held)
		for {
			b := make([]byte, 2048)
			n, from, err := c.ReadFrom(b)
			if err != nil {
				return
			}
			d := lateDatagram{b: b[:n], from: from}
			if ap, ok := from.(*net.UDPAddr); ok && slow(ap.AddrPort().Addr().Unmap()) {
				d.at = time.Now().Add(delay)
			}
			select {
			case held <- d:
			case <-l.done:
				return
			}
		}
	})
	// One queue in arrival order: every slow packet waits the same delay,
	// so none overtakes another, and a fast one waits for none of them.
	l.wg.Go(func() {
		var slowQ []lateDatagram
		timer := time.NewTimer(time.Hour)
		defer timer.Stop()
		for {
			if len(slowQ) > 0 {
				timer.Reset(time.Until(slowQ[0].at))
			}
			select {
			case d, ok := <-held:
				if !ok {
					return
				}
				if d.at.IsZero() {
					l.deliver(d)
				} else {
					slowQ = append(slowQ, d)
				}
			case <-timer.C:
				for len(slowQ) > 0 && !time.Now().Before(slowQ[0].at) {
					l.deliver(slowQ[0])
					slowQ = slowQ[1:]
				}
			case <-l.done:
				return
			}
		}
	})
	return l
}

func (l *lateConn) deliver(d lateDatagram) {
	select {
	case l.in <- d:
	case <-l.done:
	}
}

func (l *lateConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case d := <-l.in:
		return copy(b, d.b), d.from, nil
	case <-l.done:
		return 0, nil, net.ErrClosed
	}
}

func (l *lateConn) Close() error {
	select {
	case <-l.done:
		return nil
	default:
	}
	close(l.done)
	err := l.PacketConn.Close()
	l.wg.Wait()
	return err
}
