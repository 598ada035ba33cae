package dht

import (
	"context"
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
	op := traversal.Start(traversal.OperationInput{
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
			if r != nil {
				st.answered++
				h := netHost(from)
				first = !hosts[h]
				hosts[h] = true
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
	})
	start, err := n.startingNodes()
	if err != nil {
		op.Stop()
		<-op.Stopped()
		return nil, st, err
	}
	op.AddNodes(start)
	select {
	case <-op.Stalled():
	case <-ctx.Done():
		err = ctx.Err()
	case <-n.ctx.Done():
		err = ErrClosed
	}
	op.Stop()
	<-op.Stopped()
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
