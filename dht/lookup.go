package dht

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/anacrolix/dht/v2"
	k_nearest_nodes "github.com/anacrolix/dht/v2/k-nearest-nodes"
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
func (n *Node) lookup(ctx context.Context, l lookup) ([]closeNode, lookupStats, error) {
	var (
		mu    sync.Mutex
		st    lookupStats
		hosts = make(map[host]bool) // hosts with a node that answered
	)
	// taken reports whether a node of ap's host has answered.
	taken := func(ap netip.AddrPort) bool {
		mu.Lock()
		defer mu.Unlock()
		return hosts[netHost(ap)]
	}
	if n.ctx.Err() != nil {
		return nil, st, ErrClosed
	}
	if l.k == 0 {
		l.k = K
	}
	// Both lists, as most clients ask: a dual-stack node answers with both,
	// and usableNodes keeps what this socket reaches, each node once.
	l.args.Want = []krpc.Want{krpc.WantNodes, krpc.WantNodes6}
	self := n.srv.ID()
	input := traversal.OperationInput{
		Target: l.target,
		Alpha:  alpha,
		K:      l.k,
		DoQuery: func(tctx context.Context, addr krpc.NodeAddr) traversal.QueryResult {
			from := addrPort(addr.IP, addr.Port)
			if taken(from) {
				return traversal.QueryResult{}
			}
			// The traversal's context ends when it stops; the caller's when
			// the caller gives up. Either ends the query.
			// A node that has not answered within the wait n.rtt sets for
			// now is left behind: the lookup goes on without it.
			qctx, cancel := context.WithTimeout(ctx, n.rtt.wait(n.queryTimeout))
			defer cancel()
			defer context.AfterFunc(tctx, cancel)()
			sent := time.Now()
			res := n.srv.Query(qctx, dht.NewAddr(addr.UDP()), l.q, dht.QueryInput{MsgArgs: l.args})
			r := res.Reply.R
			if res.Err == nil && r != nil {
				n.rtt.add(time.Since(sent))
			}
			mu.Lock()
			st.queried++
			st.messages += int(res.Writes)
			first := false
			switch {
			case r != nil:
				st.answered++
				h := netHost(from)
				first = !hosts[h]
				hosts[h] = true
			case res.Err == nil && res.Reply.E != nil:
				st.noteFailure(fmt.Sprintf("%s answered %q with an error: %v", from, l.q, res.Reply.E))
			case res.Err != nil && qctx.Err() == nil && !errors.Is(res.Err, dht.TransactionTimeout):
				st.noteFailure(res.Err.Error())
			}
			mu.Unlock()
			if res.Err != nil || r == nil {
				return traversal.QueryResult{}
			}
			if n.external.add(res.Reply.IP) {
				n.checkReachable()
			}
			if l.reply != nil {
				l.reply(from, r)
			}
			out := traversal.QueryResult{Nodes: usableNodes(r, n.family, self)}
			if !first {
				// Its host has a place already: what it knows still
				// counts, it does not.
				return out
			}
			out.ResponseFrom = &krpc.NodeInfo{ID: r.ID, Addr: nodeAddr(from)}
			if r.Token != nil {
				out.ClosestData = *r.Token
			}
			return out
		},
		NodeFilter: func(a types.AddrMaybeId) bool {
			if a.Id.Ok && a.Id.Value.AsByteArray() == self {
				return false
			}
			ap := a.Addr.AddrPort
			ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			return ap != n.addr && n.family.reaches(ap) && n.srv.TraversalNodeFilter(a)
		},
		DataFilter: func(data any) bool {
			_, ok := data.(string)
			return ok || !l.tokens
		},
	}
	start, err := n.startingNodes()
	if err != nil {
		return nil, st, err
	}
	op := traversal.Start(input)
	op.AddNodes(start)
	err = n.walked(ctx, op)
	if err == nil && st.answered == 0 {
		// Every node the routing table named was silent: after a sleep or
		// a change of network its entries can all be stale. The bootstrap
		// nodes are asked once before the lookup gives up.
		if boot := n.bootstrapNodes(start); len(boot) > 0 {
			n.log.Debug("no node of the routing table answered; asking the bootstrap nodes", "q", l.q, "queried", st.queried)
			op = traversal.Start(input)
			op.AddNodes(boot)
			err = n.walked(ctx, op)
		}
	}
	if err != nil {
		return nil, st, err
	}
	var closest []closeNode
	op.Closest().Range(func(e k_nearest_nodes.Elem) {
		tok, _ := e.Data.(string)
		closest = append(closest, closeNode{
			id:    e.ID,
			addr:  netip.AddrPortFrom(e.Addr.Addr().Unmap(), e.Addr.Port()),
			token: tok,
		})
	})
	mu.Lock()
	defer mu.Unlock()
	return closest, st, nil
}

// walked waits until traversal op has no node left to ask, ctx ends or
// the node closes, and stops it.
func (n *Node) walked(ctx context.Context, op *traversal.Operation) error {
	var err error
	select {
	case <-op.Stalled():
	case <-ctx.Done():
		err = ctx.Err()
	case <-n.ctx.Done():
		err = ErrClosed
	}
	op.Stop()
	<-op.Stopped()
	return err
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
