package dht

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/utp"
	"golang.org/x/time/rate"

	"github.com/relay-sh/relay/internal/atomicfile"
)

// maintainAfter is when anacrolix's table maintainer starts (a variable
// for a test).
var maintainAfter = time.Minute

// saveEvery is how often a long-running node writes its NodesFile.
const saveEvery = 10 * time.Minute

// Node is a Mainline DHT node. Its methods are safe for concurrent use.
type Node struct {
	cfg    Config
	log    *slog.Logger
	now    func() time.Time
	conn   net.PacketConn
	utp    *utp.Socket // on conn; the DHT server reads what is not uTP
	srv    *dht.Server
	addr   netip.AddrPort
	family family
	items  *itemStore
	peers  *peerStore
	near   nearNodes // the closest nodes of recent Peers lookups

	// rtt is the round trip of the node's answered queries; a lookup gives
	// up on a node after the wait it sets, at most queryTimeout.
	rtt          rtt
	queryTimeout time.Duration

	external externalVotes // see ExternalIP
	// local are the addresses the node is reached at directly; reachable
	// is set once answers say it is reached at one of them (see roWriter).
	local     map[netip.Addr]bool
	reachable atomic.Bool
	natLogged atomic.Bool

	// bootstrap holds the resolved Config.Bootstrap addresses.
	bootstrap []dht.Addr

	ctx    context.Context // ends at Close
	cancel context.CancelFunc

	// started is set once srv is: the server calls onQuery as soon as it
	// serves, before NewServer returns.
	started      atomic.Bool
	occupancy    atomic.Pointer[occupancy]
	snapshotting atomic.Bool

	// intros bounds the introductions of a bootstrap node (see
	// introduce).
	intros *rate.Limiter

	// gets counts the BEP 44 get queries the node sent (GetQueries).
	gets atomic.Int64

	mu       sync.Mutex // guards closed, pinged and the wg.Add calls
	closed   bool
	pinged   map[netip.AddrPort]time.Time
	wg       sync.WaitGroup
	closeErr error
	once     sync.Once
}

// New starts a node and, unless it is a bootstrap node with nobody to
// join, joins the DHT through cfg.Bootstrap and the nodes of
// cfg.NodesFile: it returns once its routing table is filled as far as the
// network allows, or with an error when no node answered. ctx bounds the
// start only; the node runs until Close.
func New(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.ReadOnly && cfg.Bootstrapper {
		return nil, errors.New("a bootstrap node cannot be read-only")
	}
	n := &Node{
		cfg:    cfg,
		log:    cfg.Logger,
		now:    cfg.Now,
		pinged: make(map[netip.AddrPort]time.Time),
		intros: rate.NewLimiter(introRate, introBurst),
	}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if n.now == nil {
		n.now = time.Now
	}
	bootstrap, err := resolveHostPorts(ctx, cfg.Bootstrap)
	if err != nil {
		return nil, err
	}
	n.bootstrap = bootstrap
	fileNodes, err := readNodesFile(cfg.NodesFile)
	if err != nil {
		n.log.Warn("ignoring the nodes file", "file", cfg.NodesFile, "err", err)
	}
	if len(bootstrap) == 0 && len(fileNodes) == 0 && !cfg.Bootstrapper {
		if len(cfg.Bootstrap) > 0 {
			return nil, fmt.Errorf("join the dht: %w: no bootstrap node resolved (%q)", ErrNoNodes, cfg.Bootstrap)
		}
		return nil, errors.New("no node to join through: set Config.Bootstrap (DefaultBootstrap() for the public DHT)")
	}

	keptID, keptAddr, kept := loadIdentity(cfg.NodesFile)
	n.conn = cfg.Conn
	if n.conn == nil {
		listen := cfg.Listen
		if listen == "" {
			listen = ":0"
		}
		n.conn, err = listenAgain(listen, keptAddr, kept)
		if err != nil {
			return nil, fmt.Errorf("listen for the dht: %w", err)
		}
	}
	n.addr = udpAddrPort(n.conn.LocalAddr())
	n.family = familyOf(n.conn.LocalAddr())
	n.local = localAddrs(n.addr)
	// A bootstrap node, and a read-only node, say what they are from the
	// start; any other node is read-only until it knows it is reachable.
	n.reachable.Store(cfg.Bootstrapper || cfg.ReadOnly || cfg.Reachable)
	n.utp, err = utp.NewSocketFromPacketConn(n.conn)
	if err != nil {
		n.conn.Close()
		return nil, fmt.Errorf("listen for utp: %w", err)
	}

	sendRate := cfg.SendRate
	if sendRate <= 0 {
		sendRate = DefaultSendRate
	}
	timeout := cfg.QueryTimeout
	if timeout <= 0 {
		timeout = DefaultQueryTimeout
	}
	n.queryTimeout = timeout
	lifetime := cfg.ItemLifetime
	if lifetime <= 0 {
		lifetime = DefaultItemLifetime
	}
	maxItems := cfg.MaxItems
	if maxItems <= 0 {
		maxItems = DefaultMaxItems
	}
	n.peers = newPeerStore(n.now)
	g := newGuard(dhtConn{n.utp}, sendRate, cfg.ReadOnly)
	sc := dht.ServerConfig{
		NodeId:     keptID, // zero when none was kept: a random one
		Conn:       roWriter{g, n},
		NoSecurity: true,
		Passive:    cfg.ReadOnly,
		StartingNodes: func() ([]dht.Addr, error) {
			return n.bootstrap, nil
		},
		QueryResendDelay: func() time.Duration { return timeout },
		// anacrolix's wrapper around the store expires items too, by the
		// time it stored them: the same lifetime. (Zero would expire
		// every item at once.)
		Exp:         lifetime,
		Logger:      anacrolixLogger(cfg.Logger),
		DefaultWant: n.family.wants(),
		// The guard limits what the node sends, its queries and its
		// answers each on a budget of its own; anacrolix's one limiter for
		// both (dht.DefaultSendLimiter is even shared by every server in
		// the process, at 25 packets a second) is not used.
		SendLimiter: rate.NewLimiter(rate.Inf, 0),
	}
	// The ID is chosen here rather than by NewServer: the item store ranks
	// items by their distance from it.
	sc.InitNodeId()
	n.items = newItemStore(n.now, lifetime, maxItems, sc.NodeId)
	sc.Store = n.items
	if !cfg.ReadOnly {
		sc.PeerStore = n.peers
	}
	sc.OnQuery = n.onQuery
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.srv, err = dht.NewServer(&sc)
	if err != nil {
		n.cancel()
		n.utp.CloseNow()
		n.conn.Close()
		return nil, fmt.Errorf("start dht server: %w", err)
	}
	n.started.Store(true)
	if cfg.NodesFile != "" && !cfg.ReadOnly {
		if err := saveIdentity(cfg.NodesFile, n.srv.ID(), n.addr); err != nil {
			n.log.Warn("could not save the node's identity", "err", err)
		}
	}
	for _, ni := range fileNodes {
		if ni.ID != n.srv.ID() {
			n.srv.AddNode(ni)
		}
	}
	n.log.Debug("dht node listening", "addr", n.addr, "read-only", cfg.ReadOnly, "bootstrapper", cfg.Bootstrapper)

	if len(bootstrap) > 0 || len(fileNodes) > 0 {
		err := n.join(ctx)
		switch {
		case err != nil && cfg.Bootstrapper && ctx.Err() == nil:
			// A bootstrap node serves joiners whether or not its own
			// peers answer; its table maintainer tries them again.
			n.log.Warn("bootstrap node could not join its peers", "err", err)
		case err != nil && cfg.JoinLater && ctx.Err() == nil:
			n.log.Warn("no DHT node answered; trying again at each lookup", "err", err)
		case err != nil:
			n.Close()
			return nil, err
		}
	}
	if !cfg.ReadOnly {
		// A long-running node keeps its table fresh: it pings nodes it has
		// not heard from, drops those that do not answer and refreshes
		// buckets.
		n.wg.Go(n.maintain)
		if cfg.NodesFile != "" {
			n.wg.Go(n.saveLoop)
		}
	}
	return n, nil
}

// joinTries is the number of lookups a join makes before it gives up when
// no node answers.
const joinTries = 3

// join pings the bootstrap nodes, looks the node's own ID up (which fills
// the buckets near it) and refreshes the far buckets.
func (n *Node) join(ctx context.Context) error {
	start := time.Now()
	var wg sync.WaitGroup
	for _, a := range n.bootstrap {
		wg.Go(func() {
			// A node that answers enters the routing table.
			sent := time.Now()
			res := n.srv.Query(ctx, a, "ping", dht.QueryInput{})
			if res.Err == nil && n.external.add(res.Reply.IP) {
				n.checkReachable()
			}
			if res.Err != nil {
				n.log.Debug("bootstrap node did not answer", "addr", a, "err", res.Err)
			} else {
				n.rtt.add(time.Since(sent))
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	// A read-only node is short-lived: it looks itself up and leaves the
	// far buckets to the lookups it makes.
	// A lookup that nobody answered in time is tried again, twice: on a
	// loaded machine or a lossy path every answer of one round can come
	// late, and a node that fails to join is of no use. A node that may
	// join later (it has HTTP relays to go on with) does not wait.
	tries := joinTries
	if n.cfg.JoinLater {
		tries = 1
	}
	var st lookupStats
	for try := 1; ; try++ {
		s, err := n.refresh(ctx, !n.cfg.ReadOnly)
		st.add(s)
		if err != nil {
			return fmt.Errorf("join the dht: %w", err)
		}
		if st.answered > 0 || try == tries {
			break
		}
		n.log.Debug("no node answered the join's lookup; trying again", "try", try, "queried", s.queried)
	}
	if st.answered == 0 {
		return fmt.Errorf("join the dht: %w (%s; bootstrap %q)", ErrNoNodes, st.unanswered(), n.cfg.Bootstrap)
	}
	n.log.Info("joined the dht", "addr", n.addr, "nodes", n.srv.NumNodes(),
		"queried", st.queried, "answered", st.answered, "took", time.Since(start).Round(time.Millisecond))
	if n.cfg.NodesFile != "" {
		if err := n.saveNodes(); err != nil {
			n.log.Warn("could not save the routing table", "err", err)
		}
	}
	return nil
}

// Refresh pings every node of the routing table, looks the node's own ID
// up and then refreshes, farthest first, each bucket of its routing table
// that is not full, stopping at the first the network cannot fill. Nodes
// that answer a ping become "good", the only ones handed out to others.
// New looks up and refreshes once; a long-running node keeps its table
// fresh on its own within minutes, so callers need Refresh only to hurry a
// network into shape (a local test network, after a network change).
func (n *Node) Refresh(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, ni := range n.srv.Nodes() {
		wg.Go(func() {
			n.srv.Query(ctx, dht.NewAddr(ni.Addr.UDP()), "ping", dht.QueryInput{})
		})
	}
	wg.Wait()
	_, err := n.refresh(ctx, true)
	return err
}

func (n *Node) refresh(ctx context.Context, buckets bool) (lookupStats, error) {
	self := n.srv.ID()
	// Patient: a refresh is for the routing table, which takes a node
	// only when its answer comes before the lookup ends.
	_, st, err := n.lookup(ctx, lookup{q: "find_node", target: self, args: krpc.MsgArgs{Target: self}, k: 2 * K, patient: true})
	if err != nil || !buckets {
		return st, err
	}
	for i := 0; i < 160; i++ {
		if n.bucketLen(i) >= K {
			continue
		}
		target := randomIDInBucket(self, i)
		_, s, err := n.lookup(ctx, lookup{q: "find_node", target: target, args: krpc.MsgArgs{Target: target}, patient: true})
		st.add(s)
		if err != nil {
			return st, err
		}
		if n.bucketLen(i) < K {
			break
		}
	}
	return st, nil
}

// bucketLen returns how many nodes of the routing table share exactly i
// leading bits with the node's own ID.
func (n *Node) bucketLen(i int) int {
	self := n.srv.ID()
	c := 0
	for _, ni := range n.srv.Nodes() {
		if Bucket(self, ni.ID) == i {
			c++
		}
	}
	return c
}

// Bucket returns the index of the routing-table bucket that id falls in,
// seen from self: the number of leading bits they share (0 to 159; 160
// when id is self).
func Bucket(self, id [20]byte) int {
	for i := range self {
		if x := self[i] ^ id[i]; x != 0 {
			return 8*i + bits.LeadingZeros8(x)
		}
	}
	return 160
}

// randomIDInBucket returns a random ID that shares exactly i leading bits
// with self.
func randomIDInBucket(self krpc.ID, i int) krpc.ID {
	id := krpc.RandomNodeID()
	for b := 0; b <= i; b++ {
		mask := byte(0x80) >> (b % 8)
		bit := self[b/8] & mask
		if b == i {
			bit ^= mask
		}
		id[b/8] = id[b/8]&^mask | bit
	}
	return id
}

// onQuery runs, under the server's lock, for every query the node
// receives, before the server answers it.
func (n *Node) onQuery(q *krpc.Msg, source net.Addr) bool {
	if q.A != nil && (q.Q == "find_node" || q.Q == "get") {
		// anacrolix/dht picks the nodes of an answer by closeness to the
		// query's info_hash, which only get_peers carries: find_node and
		// get were answered with the nodes closest to the zero ID. Neither
		// uses info_hash for anything else. (get_peers does: it is the
		// key of the peer store, so its answers keep anacrolix's choice.)
		q.A.InfoHash = q.A.Target
		if n.started.Load() {
			q.A.InfoHash = n.answerFrom(q.A.Target)
		}
	}
	if q.Q == "put" {
		n.items.putFrom(netHost(udpAddrPort(source)))
	}
	if n.cfg.Bootstrapper && !q.ReadOnly && n.started.Load() {
		n.introduce(source)
	}
	return true
}

// occupancy is a snapshot of how many nodes each bucket of the routing
// table holds.
type occupancy struct {
	at    time.Time
	count [161]int
}

// answerFrom returns the ID anacrolix should pick the nodes of an answer
// about target by. It picks them from target's bucket and then from ever
// farther ones, never from the nearer buckets (of nodes sharing more bits
// with this node than target does), which are the next closest: in a
// sparse table, an answer named far nodes, or none, when it could name
// close ones (a bootstrap node introduced a joiner to nobody). Starting
// the scan from a nearer bucket j takes buckets j down to target's, all of
// which fit in the K answered when j is chosen so. The counts come from a
// snapshot of the table, refreshed in the background (the server's lock is
// held here).
func (n *Node) answerFrom(target krpc.ID) krpc.ID {
	occ := n.occupancy.Load()
	if occ == nil || time.Since(occ.at) > 100*time.Millisecond {
		// An old snapshot may be wrong; the plain answer is at least
		// about the target.
		n.refreshOccupancy()
		return target
	}
	self := n.srv.ID()
	b := Bucket(self, target)
	if b >= 159 {
		return target
	}
	sum, j := occ.count[b], b
	for j+1 < 160 && sum+occ.count[j+1] <= K {
		j++
		sum += occ.count[j]
	}
	if j == b {
		return target
	}
	return randomIDInBucket(self, j)
}

// refreshOccupancy takes a new snapshot of the table in the background,
// unless one is being taken.
func (n *Node) refreshOccupancy() {
	if !n.snapshotting.CompareAndSwap(false, true) {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	n.wg.Go(func() {
		defer n.snapshotting.Store(false)
		occ := &occupancy{at: time.Now()}
		self := n.srv.ID()
		for _, ni := range n.srv.Nodes() {
			occ.count[Bucket(self, ni.ID)]++
		}
		n.occupancy.Store(occ)
	})
}

// introRate and introBurst bound the pings a bootstrap node sends to
// introduce those who query it: a joiner is introduced within a second,
// a flood of queries from distinct addresses gets a few pings a second.
const introRate, introBurst = 20, 40

// introduce pings the sender of a query to a bootstrap node, unless it was
// pinged a moment ago or the node's introductions are over their rate. A
// node that answers a ping is "good", and only good nodes are handed out;
// without this a bootstrap node, which queries nobody, introduces joiners
// to nobody. Joiners not introduced now are later: they query again, and
// the table maintainer pings those it holds. (4,200 queries from distinct
// ports once made a bootstrap node queue 4,200 pings, which took its send
// limit, the one its answers had too, for 40 s.)
func (n *Node) introduce(source net.Addr) {
	ap := udpAddrPort(source)
	if !ap.IsValid() {
		return
	}
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	if t, ok := n.pinged[ap]; ok && now.Sub(t) < 10*time.Minute {
		return
	}
	if len(n.pinged) >= 4096 {
		for a, t := range n.pinged {
			if now.Sub(t) >= 10*time.Minute {
				delete(n.pinged, a)
			}
		}
		if len(n.pinged) >= 4096 {
			// A flood of distinct senders: forget them all rather than
			// stop introducing joiners for ten minutes.
			clear(n.pinged)
		}
	}
	if !n.intros.Allow() {
		return
	}
	n.pinged[ap] = now
	n.wg.Go(func() {
		n.srv.Query(n.ctx, dht.NewAddr(net.UDPAddrFromAddrPort(ap)), "ping", dht.QueryInput{})
	})
}

// Addr returns the UDP address the node serves on.
func (n *Node) Addr() netip.AddrPort { return n.addr }

// ID returns the node's 20-byte DHT node ID.
func (n *Node) ID() [20]byte { return n.srv.ID() }

// Server returns the underlying anacrolix DHT server, for example to hand
// to a torrent client (torrent.AnacrolixDhtServerWrapper) so that the DHT
// and the torrent client share one node. Node.Close closes it: do not
// close it yourself.
func (n *Node) Server() *dht.Server { return n.srv }

// Close stops the node, writes its NodesFile and waits for its goroutines
// to end: at most QueryTimeout, when the routing-table maintenance has
// queries in flight. It returns the error of writing the file, if any.
// Calling it again does nothing.
func (n *Node) Close() error {
	n.once.Do(func() {
		n.mu.Lock()
		n.closed = true
		n.mu.Unlock()
		if n.cfg.NodesFile != "" {
			n.closeErr = n.saveNodes()
		}
		n.cancel()
		n.srv.Close()
		// The server "closes" its socket in a goroutine of its own (see
		// dhtConn); close it here, so that the port is free when Close
		// returns: the uTP socket closes the UDP one.
		n.utp.SetReadDeadline(time.Unix(1, 0))
		n.utp.CloseNow()
		n.conn.Close()
		n.wg.Wait()
	})
	return n.closeErr
}

// maintain runs anacrolix's table maintainer, maintainAfter the start
// (join has just done what its first round would) and once the routing
// table holds a node (with an empty table, its bootstrap returns without
// stopping the traversal it started, and leaks a goroutine a minute).
func (n *Node) maintain() {
	wait := maintainAfter
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(wait):
		}
		if n.srv.NumNodes() > 0 {
			break
		}
		wait = time.Second
	}
	n.srv.TableMaintainer()
}

func (n *Node) saveLoop() {
	t := time.NewTicker(saveEvery)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
			if err := n.saveNodes(); err != nil {
				n.log.Warn("could not save the routing table", "err", err)
			}
		}
	}
}

// saveNodes writes the routing table to the NodesFile, atomically. An empty
// table leaves the file as it was.
func (n *Node) saveNodes() error {
	nodes := n.srv.Nodes()
	if len(nodes) == 0 {
		return nil
	}
	b, err := krpc.CompactIPv6NodeInfo(nodes).MarshalBinary()
	if err != nil {
		return fmt.Errorf("encode routing table: %w", err)
	}
	if err := atomicfile.WriteFile(n.cfg.NodesFile, b, 0o600); err != nil {
		return fmt.Errorf("save routing table: %w", err)
	}
	return nil
}

// readNodesFile reads a routing table written by saveNodes (the compact
// form anacrolix's WriteNodesToFile writes too). A missing file is no
// nodes.
func readNodesFile(name string) ([]krpc.NodeInfo, error) {
	if name == "" {
		return nil, nil
	}
	b, err := os.ReadFile(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var nodes krpc.CompactIPv6NodeInfo
	if err := nodes.UnmarshalBinary(b); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	out := make([]krpc.NodeInfo, 0, len(nodes))
	for _, ni := range nodes {
		ap := addrPort(ni.Addr.IP, ni.Addr.Port)
		if ap.IsValid() && ni.ID != (krpc.ID{}) {
			out = append(out, krpc.NodeInfo{ID: ni.ID, Addr: nodeAddr(ap)})
		}
	}
	return out, nil
}

// resolveHostPorts resolves host:port strings to UDP addresses. A name
// that does not resolve is skipped; a malformed entry is an error.
func resolveHostPorts(ctx context.Context, hostPorts []string) ([]dht.Addr, error) {
	var out []dht.Addr
	for _, hp := range hostPorts {
		host, port, err := net.SplitHostPort(hp)
		if err != nil {
			return nil, fmt.Errorf("bootstrap node %q: %w", hp, err)
		}
		addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			continue
		}
		p, err := net.LookupPort("udp", port)
		if err != nil {
			return nil, fmt.Errorf("bootstrap node %q: %w", hp, err)
		}
		for _, a := range addrs {
			out = append(out, dht.NewAddr(net.UDPAddrFromAddrPort(netip.AddrPortFrom(a.Unmap(), uint16(p)))))
		}
	}
	return out, nil
}
