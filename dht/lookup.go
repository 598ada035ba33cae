package dht

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/int160"
	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/dht/v2/types"
)

// K is the number of closest nodes that store an item or a peer, BEP 5's k.
const K = 8

// storeTries is how many times a put or an announce is sent to a node
// that does not answer: with 3% of datagrams lost each way, 6% of puts
// sent once were lost, and a publish to eight nodes missed one of them
// in 40% of publishes (docs/simulation.md).
const storeTries = 3

// alpha is the number of queries a lookup keeps within their wait (see
// rtt.slotWait).
const alpha = 6

// maxQueries is the most nodes one lookup queries (the bootstrap nodes
// asked after a silent routing table included). Hostile nodes that answer
// naming ever closer nodes, each on a host of its own, would otherwise
// have a lookup ask them all until its deadline, its queries bounded only
// by the node's send budget (250 a second). A resolve asks 19-21 nodes
// and a publish's patient get 24-26 on a simulated network of 1,000 nodes
// (docs/simulation.md); the public DHT, some 10,000 times larger, needs
// only a few more hops of a few queries each, though more of the nodes it
// is told of are gone. A lookup that reaches the cap stops asking and
// ends with the closest nodes that answered so far.
const maxQueries = 200

// StoreNodes is the number of nodes a put or an announce goes to, the
// closest that answered the lookup before it: the K closest and two more,
// the next closest, in case one of the K is gone by then or a closer
// node's answer came too late for its place. On the simulated Internet,
// with 30% of the nodes gone, a publish to the 8 closest was held by 8 of
// the 20 live nodes closest to its key in 95% of publishes, and to 10 in
// 99-100% (docs/simulation.md).
const StoreNodes = K + 2

// lookup is one iterative query towards a target: get, get_peers or
// find_node.
type lookup struct {
	q      string
	target krpc.ID
	args   krpc.MsgArgs
	k      int
	// patient makes nodes closer than the farthest of the closest set
	// hold the walk for the whole wait n.rtt sets (see rtt.wait) rather
	// than the shorter one that frees their place among the alpha (see
	// rtt.slotWait): a lookup before a put or an announce stores on the
	// closest set, and a refresh fills the routing table with the nodes
	// that answer, and a slow node there is worth a few hundred
	// milliseconds more.
	patient bool
	// tokens keeps in the closest set only nodes that gave a write token.
	tokens bool
	// reply sees every answer, on the lookup's goroutine.
	reply func(from netip.AddrPort, r *krpc.Return)
	// enough, when set, ends the walk once no node closer than the
	// farthest of the k closest that answered is left to ask, without
	// waiting for the queries still within their wait, if it says so of
	// those k; and, when fewer than k answered, without waiting for late
	// answers if it says so of those (on the lookup's goroutine).
	enough func(closest []closeNode) bool
}

// closeNode is one of the k closest nodes that answered a lookup.
type closeNode struct {
	id    krpc.ID
	addr  netip.AddrPort
	token string
}

// lookupStats counts what a lookup did.
type lookupStats struct {
	queried  int // distinct nodes queried
	answered int // nodes that answered
	messages int // packets sent, resends included
	// failed counts the queries that ended with neither an answer nor a
	// timeout: a send error or a KRPC error reply; failure is the first.
	failed  int
	failure string
}

// unanswered describes a lookup that no node answered, for ErrNoNodes's
// message: how many nodes were queried and, when some queries failed
// rather than timed out, the first failure.
func (s lookupStats) unanswered() string {
	if s.failed == 0 {
		return fmt.Sprintf("%d queried, none answered in time", s.queried)
	}
	return fmt.Sprintf("%d queried, %d failed: %s", s.queried, s.failed, s.failure)
}

// add counts what another lookup did.
func (s *lookupStats) add(o lookupStats) {
	s.queried += o.queried
	s.answered += o.answered
	s.messages += o.messages
	if s.failed == 0 {
		s.failure = o.failure
	}
	s.failed += o.failed
}

// noteFailure counts one failed query.
func (s *lookupStats) noteFailure(why string) {
	if s.failed == 0 {
		s.failure = why
	}
	s.failed++
}

// lookup walks the DHT towards l.target until no closer node is left to
// ask (or ctx ends) and returns the k closest nodes that answered, closest
// first, at most one of each host (netHost: an address, or a public /24 or
// /64).
//
// Kademlia trusts that node IDs are spread at random; anyone can pick
// IDs next to a target and run as many nodes with them as it has ports.
// Eight of them on one address took every place of the closest set, so
// a publish stored only on them and a resolver asked only them. Here the
// first node of a host to answer takes its one place; the others of that
// host are not asked (or, asked already, do not count).
//
// The walk is relay's own, not anacrolix's traversal (which waited for
// every query in flight, however far its node from the target, and kept
// a late answer's node out of its closest set). A node that has not
// answered within about a round trip (rtt.slotWait) frees its place among
// the alpha queries in flight, so that a slow or gone node does not hold
// the walk, but its answer is still taken until Config.QueryTimeout (a
// short and a full timeout, as libtorrent's lookups have), and its node
// then takes its place in the closest set like any other. The walk is
// over once k nodes answered and no node closer than the farthest of them
// is left to ask or still within that wait (within the longer rtt.wait
// for a patient lookup): nodes farther away, and nodes past their wait,
// do not hold it. l.enough can end it sooner, without waiting for the
// queries in flight. It asks at most maxQueries nodes in all. While
// fewer than k nodes have answered, it waits for late answers,
// for one more of the estimate's waits after the last that came: a fast
// group of nodes, which sets the round-trip estimate, cannot then push
// slower honest nodes out of the closest set (a ring of hostile nodes on
// one address answering at once took all but one of eight places when
// the honest nodes answered after the estimate's wait).
func (n *Node) lookup(ctx context.Context, l lookup) ([]closeNode, lookupStats, error) {
	if n.ctx.Err() != nil {
		return nil, lookupStats{}, ErrClosed
	}
	if l.k == 0 {
		l.k = K
	}
	// Both lists, as most clients ask: a dual-stack node answers with both,
	// and usableNodes keeps what this socket reaches, each node once.
	l.args.Want = []krpc.Want{krpc.WantNodes, krpc.WantNodes6}
	lctx, stop := context.WithCancel(ctx)
	w := &walk{n: n, l: l, ctx: lctx, self: n.srv.ID(), target: int160.FromByteArray(l.target),
		hosts: make(map[host]bool), nodes: make(map[netip.AddrPort]*candidate), events: make(chan answer)}
	start, err := n.startingNodes()
	if err != nil {
		stop()
		return nil, w.st, err
	}
	err = w.run(ctx, start)
	if err == nil && w.st.answered == 0 {
		// Every node the routing table named was silent: after a sleep or
		// a change of network its entries can all be stale. The bootstrap
		// nodes are asked once before the lookup gives up.
		if boot := n.bootstrapNodes(start); len(boot) > 0 {
			n.log.Debug("no node of the routing table answered; asking the bootstrap nodes", "q", l.q, "queried", w.sent)
			err = w.run(ctx, boot)
		}
	}
	stop() // the queries still out end, unanswered
	w.queries.Wait()
	if w.sent >= maxQueries {
		n.log.Debug("a lookup stopped at its cap of queries", "q", l.q, "queried", w.sent, "answered", w.st.answered)
	}
	w.st.queried, w.st.messages = w.sent, int(w.writes.Load())
	if err != nil {
		return nil, w.st, err
	}
	return w.found[:min(len(w.found), l.k)], w.st, nil
}

// candidate is a node a lookup learnt of.
type candidate struct {
	addr  netip.AddrPort
	id    int160.T
	hasID bool // bootstrap nodes are known by address only
	state int  // unasked, asking, late or settled
	// due is when an unanswered query frees its place among the alpha;
	// until is when it stops holding a patient lookup.
	due, until time.Time
}

// The states of a candidate: not asked; asked, within its wait; asked,
// past its wait and not answered yet; answered, failed, given up or
// skipped.
const (
	unasked = iota
	asking
	late
	settled
)

// answer is the result of one query, for the lookup's goroutine.
type answer struct {
	c   *candidate
	res dht.QueryResult
	rtt time.Duration
}

// walk is the state of one lookup. Its queries' goroutines send their
// answers on events; everything else is the lookup's goroutine's own.
type walk struct {
	n      *Node
	l      lookup
	ctx    context.Context // ends when the lookup returns, and its queries with it
	self   krpc.ID
	target int160.T

	queries sync.WaitGroup // every query sent, until it ends
	events  chan answer
	writes  atomic.Int64 // packets sent, resends included

	st     lookupStats
	hosts  map[host]bool // hosts with a node that answered
	nodes  map[netip.AddrPort]*candidate
	found  []closeNode // the nodes that took a place, closest first
	sent   int
	asking int // queries within their wait
	late   int // queries past their wait, not answered yet
}

// run walks from the nodes start until no closer node is left to ask and
// no late answer is worth waiting for, or ctx ends.
func (w *walk) run(ctx context.Context, start []types.AddrMaybeId) error {
	for _, a := range start {
		w.add(a)
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var graceEnd time.Time
	for {
		now := time.Now()
		w.expire(now)
		w.send()
		next, over := w.settle(now)
		if over {
			if len(w.found) >= w.l.k || w.late == 0 || (w.l.enough != nil && w.l.enough(w.found)) {
				return nil
			}
			// A late answer adds its node to the closest set and the
			// nodes it names to the walk. The wait for one is the
			// estimate's wait again (it has grown with any late answer
			// taken): a node gone for good holds the lookup that long,
			// not QueryTimeout.
			if graceEnd.IsZero() {
				graceEnd = now.Add(w.n.rtt.wait(w.n.queryTimeout))
			}
			if !now.Before(graceEnd) {
				return nil
			}
			next = graceEnd
		}
		timer.Reset(next.Sub(now))
		select {
		case a := <-w.events:
			w.take(a)
			graceEnd = time.Time{}
		case <-timer.C:
		case <-ctx.Done():
			return ctx.Err()
		case <-w.n.ctx.Done():
			return ErrClosed
		}
	}
}

// add notes a node the lookup may ask, unless it is this node or one it
// cannot or should not ask.
func (w *walk) add(a types.AddrMaybeId) {
	if a.Id.Ok && a.Id.Value.AsByteArray() == w.self {
		return
	}
	ap := a.Addr.AddrPort
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if w.nodes[ap] != nil || ap == w.n.addr || !w.n.family.reaches(ap) || !w.n.srv.TraversalNodeFilter(a) {
		return
	}
	c := &candidate{addr: ap}
	if a.Id.Ok {
		c.id, c.hasID = a.Id.Value, true
	}
	w.nodes[ap] = c
}

// matters reports whether c could take a place in the closest set: it is
// closer than the farthest of k nodes that took one, or fewer have.
func (w *walk) matters(c *candidate) bool {
	if len(w.found) < w.l.k {
		return true
	}
	far := int160.FromByteArray(w.found[w.l.k-1].id)
	return c.hasID && c.id.Distance(w.target).Cmp(far.Distance(w.target)) < 0
}

// send asks the closest candidates that matter, while fewer than alpha
// queries are within their wait and fewer than maxQueries were sent. A
// node whose host has a place already is not asked.
func (w *walk) send() {
	for w.asking < alpha && w.sent < maxQueries {
		var next *candidate
		for _, c := range w.nodes {
			if c.state != unasked || !w.matters(c) {
				continue
			}
			if next == nil || w.closer(c, next) {
				next = c
			}
		}
		if next == nil {
			return
		}
		if w.hosts[netHost(next.addr)] {
			next.state = settled
			continue
		}
		w.ask(next)
	}
}

// closer reports whether a is closer to the target than b; a node known
// by address only is farther than any other.
func (w *walk) closer(a, b *candidate) bool {
	if a.hasID != b.hasID {
		return a.hasID
	}
	return a.hasID && a.id.Distance(w.target).Cmp(b.id.Distance(w.target)) < 0
}

// ask sends l.q to c; its answer comes on w.events.
func (w *walk) ask(c *candidate) {
	now := time.Now()
	c.state, c.due = asking, now.Add(w.n.rtt.slotWait(w.n.queryTimeout))
	c.until = c.due
	if w.l.patient {
		c.until = now.Add(w.n.rtt.wait(w.n.queryTimeout))
	}
	w.asking++
	w.sent++
	to := dht.NewAddr(net.UDPAddrFromAddrPort(c.addr))
	w.queries.Go(func() {
		qctx, cancel := context.WithTimeout(w.ctx, w.n.queryTimeout)
		defer cancel()
		res := w.n.srv.Query(qctx, to, w.l.q, dht.QueryInput{MsgArgs: w.l.args})
		w.writes.Add(int64(res.Writes))
		select {
		case w.events <- answer{c: c, res: res, rtt: time.Since(now)}:
		case <-w.ctx.Done():
		}
	})
}

// expire marks the queries past their wait as late: they free their
// places among the alpha.
func (w *walk) expire(now time.Time) {
	for _, c := range w.nodes {
		if c.state == asking && !now.Before(c.due) {
			c.state = late
			w.asking--
			w.late++
		}
	}
}

// settle reports whether the walk is over: no node that matters is left
// to ask or within its wait (see lookup). next is when the next wait ends.
func (w *walk) settle(now time.Time) (next time.Time, over bool) {
	over = true
	toAsk := false
	defer func() {
		if !over && !toAsk && w.l.enough != nil && len(w.found) >= w.l.k && w.l.enough(w.found[:w.l.k]) {
			over = true
		}
	}()
	for _, c := range w.nodes {
		if c.state == asking && (next.IsZero() || c.due.Before(next)) {
			// Whether it matters or not, its place among the alpha
			// frees then.
			next = c.due
		}
		switch {
		case c.state == asking && w.matters(c):
			over = false
		case c.state == late && now.Before(c.until) && w.matters(c):
			over = false
			if next.IsZero() || c.until.Before(next) {
				next = c.until
			}
		case c.state == unasked && w.sent < maxQueries && w.matters(c) && !w.hosts[netHost(c.addr)]:
			// Only while alpha queries are within their wait, which
			// set next.
			over, toAsk = false, true
		}
	}
	return next, over
}

// take counts the result of one query, gives its node a place in the
// closest set if it is the first of its host to answer (with a write
// token, when the lookup needs one), and adds the nodes it names.
func (w *walk) take(a answer) {
	c, res := a.c, a.res
	switch c.state {
	case asking:
		w.asking--
	case late:
		w.late--
	}
	c.state = settled
	r := res.Reply.R
	if res.Err == nil && r != nil {
		w.n.rtt.add(a.rtt)
	}
	first := false
	switch {
	case r != nil:
		w.st.answered++
		h := netHost(c.addr)
		first = !w.hosts[h]
		w.hosts[h] = true
	case res.Err == nil && res.Reply.E != nil:
		w.st.noteFailure(fmt.Sprintf("%s answered %q with an error: %v", c.addr, w.l.q, res.Reply.E))
	case res.Err != nil && !errors.Is(res.Err, context.DeadlineExceeded) && !errors.Is(res.Err, context.Canceled) && !errors.Is(res.Err, dht.TransactionTimeout):
		w.st.noteFailure(res.Err.Error())
	}
	if res.Err != nil || r == nil {
		return
	}
	var tok string
	if r.Token != nil {
		tok = *r.Token
	}
	if first && (tok != "" || !w.l.tokens) {
		cn := closeNode{id: r.ID, addr: c.addr, token: tok}
		d := int160.FromByteArray(r.ID).Distance(w.target)
		i, _ := slices.BinarySearchFunc(w.found, d, func(f closeNode, d int160.T) int {
			return int160.FromByteArray(f.id).Distance(w.target).Cmp(d)
		})
		w.found = slices.Insert(w.found, i, cn)
	}
	if w.n.external.add(res.Reply.IP) {
		w.n.checkReachable()
	}
	if w.l.reply != nil {
		w.l.reply(c.addr, r)
	}
	for _, ni := range usableNodes(r, w.n.family, w.self) {
		var m types.AddrMaybeId
		m.FromNodeInfo(ni)
		w.add(m)
	}
}

// bootstrapNodes returns the bootstrap nodes a lookup that started from
// tried did not ask already.
func (n *Node) bootstrapNodes(tried []types.AddrMaybeId) []types.AddrMaybeId {
	asked := make(map[netip.AddrPort]bool, len(tried))
	for _, t := range tried {
		asked[t.Addr.AddrPort] = true
	}
	var out []types.AddrMaybeId
	for _, a := range n.bootstrap {
		ap := udpAddrPort(a.Raw())
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if ap.IsValid() && !asked[ap] && ap != n.addr {
			out = append(out, types.AddrMaybeId{Addr: krpc.NodeAddr{IP: ap.Addr().AsSlice(), Port: int(ap.Port())}.ToNodeAddrPort()})
		}
	}
	return out
}

// startingNodes returns the nodes a lookup starts from: the routing table,
// or the bootstrap nodes when the table is empty.
func (n *Node) startingNodes() ([]types.AddrMaybeId, error) {
	nodes, err := n.srv.TraversalStartingNodes()
	if err != nil || len(nodes) == 0 {
		return nil, fmt.Errorf("%w: the routing table is empty and no bootstrap node is known", ErrNoNodes)
	}
	for i := range nodes {
		ap := nodes[i].Addr.AddrPort
		nodes[i].Addr.AddrPort = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return nodes, nil
}
