package dht_test

// One test per trap of anacrolix/dht v2.23.0 that NOTES-dependencies.md
// lists (and two more found while building this package), each failing
// without its fix. Others are in bep44_test.go (a put's acknowledgements
// from distinct nodes: TestPublishResolve; refusals: TestStoreRefusedIsError;
// cas: TestPublishRepeatedlyWithoutCAS) and internal_test.go.

import (
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	anacrolix "github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/relay-sh/relay/dht"
	"github.com/relay-sh/relay/dht/localnet"
	"github.com/relay-sh/relay/record"
)

// anacrolix's DefaultSendLimiter is one limiter shared by every server in
// the process. With it stopped entirely, nodes that use it cannot send a
// packet; relay's nodes, each with its own, do not notice.
func TestEachNodeHasItsOwnSendLimiter(t *testing.T) {
	l := anacrolix.DefaultSendLimiter
	limit, burst := l.Limit(), l.Burst()
	l.SetLimit(0)
	l.SetBurst(0)
	t.Cleanup(func() {
		l.SetLimit(limit)
		l.SetBurst(burst)
	})
	if l.Allow() {
		t.Fatal("the shared limiter still allows sending")
	}
	net := localnet.ForTest(t, localnet.Config{Nodes: 4})
	ctx := ctxFor(t, 20*time.Second)
	key := newKey(t)
	if _, _, err := net.Nodes[0].Publish(ctx, key, setRelease(key.PublicKey(), release(t, "stable", "1.0.0"))); err != nil {
		t.Fatal(err)
	}
	if _, _, err := net.Nodes[3].Resolve(ctx, key.PublicKey()); err != nil {
		t.Fatal(err)
	}
}

// A bootstrap node queries nobody, so nobody is "good" in its table and
// it hands out nobody; pinging whoever queries it makes it introduce
// joiners to each other. Here the second joiner learns the first from it.
// The ping is sent as the first joiner arrives, and answered a moment
// later, possibly after that joiner's own join has returned: the test
// waits for the answer (a good node in the bootstrap node's table) before
// the second joiner comes, which took up to a few milliseconds under the
// race detector. (Its table maintainer, which starts a second after the
// first joiner arrives, would query joiners too: the test is over by then.)
func TestBootstrapNodeIntroducesJoiners(t *testing.T) {
	ctx := ctxFor(t, 20*time.Second)
	b, err := dht.New(ctx, dht.Config{Listen: "127.0.0.1:0", Bootstrapper: true, SendRate: 1000, QueryTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cfg := dht.Config{Listen: "127.0.0.1:0", Bootstrap: []string{b.Addr().String()}, SendRate: 1000, QueryTimeout: time.Second}
	first, err := dht.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	for deadline := time.Now().Add(5 * time.Second); b.Server().Stats().GoodNodes == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the bootstrap node did not ping the first joiner, or got no answer, within 5 s")
		}
	}
	second, err := dht.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if !slices.ContainsFunc(second.Server().Nodes(), func(ni krpc.NodeInfo) bool { return ni.ID == first.ID() }) {
		t.Fatal("a joiner did not learn the earlier joiner from the bootstrap node")
	}
}

// 32 nodes joining through one bootstrap node, one after the other, each
// end with a full routing table (localnet.Full: every bucket holds min(8,
// the nodes that fall in it)) once each has refreshed its table, as its
// table maintainer does within a minute: a node that joined early learns
// of later ones then. Without the bootstrap node's pings nobody learns of
// anybody, however often they refresh.
func TestBootstrapNodeForms32NodeNetwork(t *testing.T) {
	// A bound on a hang: 17-20 s under -race alone, more beside other work.
	ctx := ctxFor(t, 3*time.Minute)
	b, err := dht.New(ctx, dht.Config{Listen: "127.0.0.1:0", Bootstrapper: true, SendRate: 10000, QueryTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	all := []*dht.Node{b}
	defer func() {
		start := time.Now()
		var wg sync.WaitGroup
		for _, n := range all {
			wg.Go(func() { n.Close() })
		}
		wg.Wait()
		t.Logf("closed in %v", time.Since(start))
	}()
	start := time.Now()
	for range 32 {
		n, err := dht.New(ctx, dht.Config{Listen: "127.0.0.1:0", Bootstrap: []string{b.Addr().String()}, SendRate: 10000, QueryTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, n)
	}
	t.Logf("32 nodes joined in %v", time.Since(start))
	full := 0
	for _, n := range all {
		if localnet.Full(n, all) == nil {
			full++
		}
		// Joining alone, each knows at least k others.
		if known := n.Server().NumNodes(); known < dht.K {
			t.Errorf("node %v knows %d nodes after joining, want %d or more", n.Addr(), known, dht.K)
		}
	}
	t.Logf("%d of %d routing tables full after joining", full, len(all))
	// All 33 refresh at once, as they would not in life: a node refreshing
	// while the others still are may miss a few of them, so it refreshes
	// again, as its maintainer would: three rounds on an idle machine, up
	// to six beside other work (at a load of 25 on two cores, queries
	// time out and three rounds left two or three tables short).
	var notFull []error
	for round := 1; round <= 6; round++ {
		var wg sync.WaitGroup
		for _, n := range all {
			wg.Go(func() {
				if err := n.Refresh(ctx); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		notFull = notFull[:0]
		for _, n := range all {
			if err := localnet.Full(n, all); err != nil {
				notFull = append(notFull, err)
			}
		}
		t.Logf("refresh round %d: %d of %d routing tables full", round, len(all)-len(notFull), len(all))
		if len(notFull) == 0 {
			return
		}
	}
	for _, err := range notFull {
		t.Error(err)
	}
}

// anacrolix/dht answers find_node and get with the nodes closest to the
// query's info_hash, which only get_peers carries: every answer was about
// the zero ID. Asked for a node it knows (and has heard from: only those
// are handed out), a node must name it.
func TestFindNodeAnswersForTheTarget(t *testing.T) {
	net := sharedNet(t)
	ctx := ctxFor(t, 20*time.Second)
	asker := net.Nodes[0].Server()
	for _, x := range net.Nodes[1:9] {
		// Hear from every node of the table.
		if err := x.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		for _, known := range x.Server().Nodes() {
			for _, q := range []string{"find_node", "get"} {
				res := asker.Query(ctx, anacrolix.NewAddr(udp(x)), q, anacrolix.QueryInput{
					MsgArgs: krpc.MsgArgs{Target: known.ID, Want: []krpc.Want{krpc.WantNodes}},
				})
				if res.Err != nil || res.Reply.R == nil {
					t.Fatalf("%s to %v: %v", q, x.Addr(), res.ToError())
				}
				if !slices.ContainsFunc(res.Reply.R.Nodes, func(ni krpc.NodeInfo) bool { return ni.ID == known.ID }) {
					t.Fatalf("%s for %x to %v, which knows it, did not name it", q, known.ID, x.Addr())
				}
			}
		}
	}
}

func udp(n *dht.Node) *net.UDPAddr { return net.UDPAddrFromAddrPort(n.Addr()) }

// Nodes store announce_peer only with a PeerStore, and anacrolix's keys
// peers by IP alone: on 127.0.0.1 each announce replaced the last.
func TestPeersOnOneHost(t *testing.T) {
	net := sharedNet(t)
	ctx := ctxFor(t, 20*time.Second)
	var ih record.Infohash
	ih[0], ih[19] = 0xab, 0xcd
	for i, n := range net.Nodes[15:18] {
		if err := n.Announce(ctx, ih, 7001+i); err != nil {
			t.Fatal(err)
		}
	}
	// Port 0 announces the node's own UDP port (implied_port).
	implied := net.Nodes[18]
	if err := implied.Announce(ctx, ih, 0); err != nil {
		t.Fatal(err)
	}
	peers, err := net.Nodes[19].Peers(ctx, ih)
	if err != nil {
		t.Fatal(err)
	}
	if len(peers) == 0 {
		for _, n := range net.All() {
			t.Logf("%v holds %v", n.Addr(), n.Server().PeerStore().GetPeers(metainfo.Hash(ih)))
		}
	}
	want := []string{"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003", implied.Addr().String()}
	var got []string
	for _, p := range peers {
		got = append(got, p.String())
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("peers %v: %s missing", got, w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("peers %v, want %v", got, want)
	}
	none, err := net.Nodes[19].Peers(ctx, record.Infohash{1})
	if err != nil || len(none) != 0 {
		t.Errorf("peers of an infohash nobody announced: %v, %v", none, err)
	}
}

// A short-lived process's node would stay in others' routing tables after
// it exits, and their queries would wait on it. A read-only node (BEP 43)
// is in nobody's table, even after it resolved and published.
func TestReadOnlyNodeStaysOutOfTables(t *testing.T) {
	net := sharedNet(t)
	ctx := ctxFor(t, 20*time.Second)
	ro, err := dht.New(ctx, net.Config(func(c *dht.Config) { c.ReadOnly = true }))
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	key := newKey(t)
	if _, _, err := ro.Publish(ctx, key, setRelease(key.PublicKey(), release(t, "stable", "1.0.0"))); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ro.Resolve(ctx, key.PublicKey()); err != nil {
		t.Fatal(err)
	}
	for _, n := range net.All() {
		for _, ni := range n.Server().Nodes() {
			if ni.ID == ro.ID() {
				t.Fatalf("node %v holds the read-only node in its routing table", n.Addr())
			}
		}
	}
}

func TestConfigErrors(t *testing.T) {
	ctx := ctxFor(t, 10*time.Second)
	if _, err := dht.New(ctx, dht.Config{Listen: "127.0.0.1:0", ReadOnly: true, Bootstrapper: true}); err == nil {
		t.Error("a read-only bootstrap node was accepted")
	}
	if _, err := dht.New(ctx, dht.Config{Listen: "127.0.0.1:0"}); err == nil {
		t.Error("a node with nobody to join was accepted")
	}
	if _, err := dht.New(ctx, dht.Config{Listen: "127.0.0.1:0", Bootstrap: []string{"127.0.0.1"}}); err == nil {
		t.Error("a bootstrap address without a port was accepted")
	}
	// A port nobody listens on.
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := c.LocalAddr().String()
	c.Close()
	_, err = dht.New(ctx, dht.Config{Listen: "127.0.0.1:0", Bootstrap: []string{dead}, QueryTimeout: 100 * time.Millisecond})
	if !errors.Is(err, dht.ErrNoNodes) {
		t.Errorf("join through a dead address: %v, want ErrNoNodes", err)
	}
	// A bootstrap node whose own peers do not answer still serves.
	b, err := dht.New(ctx, dht.Config{Listen: "127.0.0.1:0", Bootstrapper: true, Bootstrap: []string{dead}, QueryTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Errorf("bootstrap node with dead peers: %v", err)
	} else {
		b.Close()
	}
	if bs := dht.DefaultBootstrap(); len(bs) != 4 {
		t.Errorf("DefaultBootstrap() = %v", bs)
	}
}

// Close frees the port at once, can be called twice, and ends every
// operation with ErrClosed (TestMain checks that no goroutine is left).
func TestClose(t *testing.T) {
	ctx := ctxFor(t, 10*time.Second)
	b, err := dht.New(ctx, dht.Config{Listen: "127.0.0.1:0", Bootstrapper: true})
	if err != nil {
		t.Fatal(err)
	}
	n, err := dht.New(ctx, dht.Config{Listen: "127.0.0.1:0", Bootstrap: []string{b.Addr().String()}})
	if err != nil {
		t.Fatal(err)
	}
	addr := n.Addr()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	c, err := net.ListenPacket("udp", addr.String())
	if err != nil {
		t.Fatalf("port still taken after Close: %v", err)
	}
	c.Close()
	if _, _, err := n.Resolve(ctx, newKey(t).PublicKey()); !errors.Is(err, dht.ErrClosed) {
		t.Errorf("resolve after Close: %v, want ErrClosed", err)
	}
	if err := n.Announce(ctx, record.Infohash{1}, 1); !errors.Is(err, dht.ErrClosed) {
		t.Errorf("announce after Close: %v, want ErrClosed", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

// PeersAgain asks the closest nodes of the last Peers again: a peer that
// announced itself since is found, without a lookup's walk.
func TestPeersAgain(t *testing.T) {
	net := sharedNet(t)
	ctx := ctxFor(t, 20*time.Second)
	var ih record.Infohash
	ih[0], ih[19] = 0x5e, 0xed
	asker := net.Nodes[20]
	// Nothing remembered yet: a lookup.
	if peers, err := asker.PeersAgain(ctx, ih, 0); err != nil || len(peers) != 0 {
		t.Fatalf("PeersAgain before any announce: %v, %v", peers, err)
	}
	if err := net.Nodes[21].Announce(ctx, ih, 7101); err != nil {
		t.Fatal(err)
	}
	peers, err := asker.PeersAgain(ctx, ih, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := "127.0.0.1:7101"; len(peers) != 1 || peers[0].String() != want {
		t.Fatalf("PeersAgain after an announce: %v, want [%s]", peers, want)
	}
}
