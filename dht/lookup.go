package dht

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/int160"
	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/dht/v2/traversal"
	"github.com/anacrolix/dht/v2/types"
)

// K is the number of closest nodes that store an item or a peer, BEP 5's k.
const K = 8

// alpha is the number of queries a lookup keeps in flight.
const alpha = 6

// lookup is one iterative query towards a target: get, get_peers or
// find_node.
type lookup struct {
	q      string
	target krpc.ID
	args   krpc.MsgArgs
	k      int
	// tokens keeps in the closest set only nodes that gave a write token.
	tokens bool
	// reply sees every answer, from any goroutine.
	reply func(from netip.AddrPort, r *krpc.Return)
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
// A node that has not answered within the wait n.rtt sets frees its
// place among the alpha queries in flight, so that a slow or gone node
// does not hold the walk, but its answer is still taken until
// Config.QueryTimeout (a short and a full timeout, as libtorrent's
// lookups have). Once the walk has no node left to ask, the lookup waits
// for such late answers while fewer than k nodes have answered, for one
// more of the estimate's waits after the last that came: a fast group of
// nodes, which sets the round-trip estimate, cannot then push slower
// honest nodes out of the closest set (a ring of hostile
// nodes on one address answering at once took all but one of eight
// places when the honest nodes answered after the estimate's wait).
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
	w := &walk{n: n, l: l, ctx: lctx, self: n.srv.ID(), hosts: make(map[host]bool), changed: make(chan struct{})}
	start, err := n.startingNodes()
	if err != nil {
		stop()
		return nil, w.st, err
	}
	err = w.run(ctx, start)
	if err == nil && w.answeredCount() == 0 {
		// Every node the routing table named was silent: after a sleep or
		// a change of network its entries can all be stale. The bootstrap
		// nodes are asked once before the lookup gives up.
		if boot := n.bootstrapNodes(start); len(boot) > 0 {
			n.log.Debug("no node of the routing table answered; asking the bootstrap nodes", "q", l.q, "queried", w.queriedCount())
			err = w.run(ctx, boot)
		}
	}
	w.mu.Lock()
	w.done = true // answers from now on are dropped
	w.mu.Unlock()
	stop()
	w.queries.Wait()
	if err != nil {
		return nil, w.st, err
	}
	return w.closest(), w.st, nil
}

// walk is the state of one lookup, shared by its traversals' queries.
type walk struct {
	n    *Node
	l    lookup
	ctx  context.Context // ends when the lookup returns
	self krpc.ID

	queries sync.WaitGroup // every query sent, until it ends

	mu        sync.Mutex
	st        lookupStats
	hosts     map[host]bool // hosts with a node that answered
	op        *traversal.Operation
	found     []closeNode   // closest-set candidates, whether on time or late
	responded int           // of them
	late      int           // queries given up on that may still answer
	changed   chan struct{} // closed and replaced when late falls
	done      bool
}

func (w *walk) answeredCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.st.answered
}

func (w *walk) queriedCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.st.queried
}

// run walks from the nodes start until no closer node is left to ask and
// no late answer is worth waiting for, or ctx ends.
func (w *walk) run(ctx context.Context, start []types.AddrMaybeId) error {
	op := traversal.Start(traversal.OperationInput{
		Target:  w.l.target,
		Alpha:   alpha,
		K:       w.l.k,
		DoQuery: w.query,
		NodeFilter: func(a types.AddrMaybeId) bool {
			if a.Id.Ok && a.Id.Value.AsByteArray() == w.self {
				return false
			}
			ap := a.Addr.AddrPort
			ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			return ap != w.n.addr && w.n.family.reaches(ap) && w.n.srv.TraversalNodeFilter(a)
		},
		// The closest set is w.found; the traversal's own only steers it.
		DataFilter: func(data any) bool {
			_, ok := data.(string)
			return ok || !w.l.tokens
		},
	})
	w.mu.Lock()
	w.op = op
	w.mu.Unlock()
	op.AddNodes(start)
	defer func() {
		op.Stop()
		<-op.Stopped()
	}()
	for {
		select {
		case <-op.Stalled():
		case <-ctx.Done():
			return ctx.Err()
		case <-w.n.ctx.Done():
			return ErrClosed
		}
		w.mu.Lock()
		wait := w.changed
		if w.late == 0 || w.responded >= w.l.k {
			wait = nil
		}
		w.mu.Unlock()
		if wait == nil {
			return nil
		}
		// A late answer adds its nodes to op, which then walks on. The
		// wait for one is the estimate's wait again (it has grown with
		// any late answer taken): a node gone for good holds the lookup
		// that long, not QueryTimeout.
		grace := time.NewTimer(w.n.rtt.wait(w.n.queryTimeout))
		select {
		case <-wait:
			grace.Stop()
		case <-grace.C:
			return nil
		case <-ctx.Done():
			grace.Stop()
			return ctx.Err()
		case <-w.n.ctx.Done():
			grace.Stop()
			return ErrClosed
		}
	}
}

// query is the traversal's DoQuery: it sends l.q to addr and returns the
// answer if it comes within the wait n.rtt sets, or nothing, leaving the
// query to end on its own (see lookup).
func (w *walk) query(tctx context.Context, addr krpc.NodeAddr) traversal.QueryResult {
	from := addrPort(addr.IP, addr.Port)
	w.mu.Lock()
	if w.hosts[netHost(from)] || w.done {
		w.mu.Unlock()
		return traversal.QueryResult{}
	}
	w.mu.Unlock()
	var (
		answer = make(chan dht.QueryResult, 1)
		gaveUp bool // under w.mu: the traversal went on without it
	)
	qctx, cancel := context.WithTimeout(w.ctx, w.n.queryTimeout)
	sent := time.Now()
	w.queries.Go(func() {
		defer cancel()
		res := w.n.srv.Query(qctx, dht.NewAddr(addr.UDP()), w.l.q, dht.QueryInput{MsgArgs: w.l.args})
		w.mu.Lock()
		late := gaveUp
		w.mu.Unlock()
		if !late {
			answer <- res
			return
		}
		w.take(from, res, sent, true)
		w.mu.Lock()
		w.late--
		close(w.changed)
		w.changed = make(chan struct{})
		w.mu.Unlock()
	})
	soft := time.NewTimer(w.n.rtt.wait(w.n.queryTimeout))
	defer soft.Stop()
	select {
	case res := <-answer:
		return w.take(from, res, sent, false)
	case <-soft.C:
	case <-tctx.Done():
	}
	w.mu.Lock()
	select {
	case res := <-answer:
		// It came as the wait ended.
		w.mu.Unlock()
		return w.take(from, res, sent, false)
	default:
	}
	gaveUp = true
	w.late++
	w.mu.Unlock()
	return traversal.QueryResult{}
}

// take counts the result of one query and returns what the traversal
// learns from it. A late answer (the traversal went on without it) gives
// its nodes to the traversal and its node to the closest set directly.
func (w *walk) take(from netip.AddrPort, res dht.QueryResult, sent time.Time, late bool) traversal.QueryResult {
	r := res.Reply.R
	if res.Err == nil && r != nil {
		w.n.rtt.add(time.Since(sent))
	}
	w.mu.Lock()
	if w.done {
		w.mu.Unlock()
		return traversal.QueryResult{}
	}
	w.st.queried++
	w.st.messages += int(res.Writes)
	first := false
	switch {
	case r != nil:
		w.st.answered++
		h := netHost(from)
		first = !w.hosts[h]
		w.hosts[h] = true
	case res.Err == nil && res.Reply.E != nil:
		w.st.noteFailure(fmt.Sprintf("%s answered %q with an error: %v", from, w.l.q, res.Reply.E))
	case res.Err != nil && !errors.Is(res.Err, context.DeadlineExceeded) && !errors.Is(res.Err, context.Canceled) && !errors.Is(res.Err, dht.TransactionTimeout):
		w.st.noteFailure(res.Err.Error())
	}
	var tok string
	if r != nil && r.Token != nil {
		tok = *r.Token
	}
	if first && (tok != "" || !w.l.tokens) {
		w.found = append(w.found, closeNode{id: r.ID, addr: from, token: tok})
		w.responded++
	}
	op := w.op
	w.mu.Unlock()
	if res.Err != nil || r == nil {
		return traversal.QueryResult{}
	}
	if w.n.external.add(res.Reply.IP) {
		w.n.checkReachable()
	}
	if w.l.reply != nil {
		w.l.reply(from, r)
	}
	out := traversal.QueryResult{Nodes: usableNodes(r, w.n.family, w.self)}
	if late {
		nodes := make([]types.AddrMaybeId, len(out.Nodes))
		for i, ni := range out.Nodes {
			nodes[i].FromNodeInfo(ni)
		}
		op.AddNodes(nodes)
		return out
	}
	if !first {
		// Its host has a place already: what it knows still counts, it
		// does not.
		return out
	}
	out.ResponseFrom = &krpc.NodeInfo{ID: r.ID, Addr: nodeAddr(from)}
	if r.Token != nil {
		out.ClosestData = *r.Token
	}
	return out
}

// closest returns the k nodes of w.found closest to the target, closest
// first.
func (w *walk) closest() []closeNode {
	w.mu.Lock()
	defer w.mu.Unlock()
	target := int160.FromByteArray(w.l.target)
	out := slices.Clone(w.found)
	slices.SortFunc(out, func(a, b closeNode) int {
		da := int160.FromByteArray(a.id)
		db := int160.FromByteArray(b.id)
		return da.Distance(target).Cmp(db.Distance(target))
	})
	return out[:min(len(out), w.l.k)]
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
