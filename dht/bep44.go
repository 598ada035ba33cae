package dht

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"

	"github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/krpc"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
)

// ResolveStats says what a Resolve (or the read before a put) found. It
// counts other nodes: the node's own store is consulted too, uncounted.
type ResolveStats struct {
	// Queried is the number of distinct nodes queried.
	Queried int
	// Answered is the number of nodes that answered.
	Answered int
	// Held is the number of distinct hosts whose nodes returned the
	// packet returned.
	Held int
	// Older is the number of distinct hosts whose nodes returned a valid
	// packet with a lower seq.
	Older int
	// Invalid is the number of nodes that returned a packet that fails
	// verification (bad signature, wrong key, malformed, too large).
	Invalid int
	// Messages is the number of packets sent, resends included.
	Messages int
}

// PutStats says what a Publish or a Store did.
type PutStats struct {
	// Queried and Answered count the nodes of the read before the put.
	Queried, Answered int
	// Acked is the number of distinct hosts (an address, or a public
	// IPv4 /24 or IPv6 /64: see docs/security.md) that acknowledged the put: they
	// hold the packet now, unless they lie. Nodes of one host count once,
	// and a lookup's closest set holds one node of each host, so however
	// many node IDs one host runs, it makes one of Acked.
	Acked int
	// Refused is the number of nodes that answered the put with an error.
	Refused int
	// Messages is the number of packets sent, read and put, resends
	// included.
	Messages int
}

// found is what a get lookup gathered.
type found struct {
	best    *record.SignedPacket
	closest []closeNode
	stats   ResolveStats
	lookup  lookupStats
}

// get looks up key's item: it verifies every answer and keeps the highest
// valid seq, and returns the closest nodes with their write tokens. A node
// that answers with a forged or older packet counts as such and changes
// nothing.
//
// The get before a put (forPut) is patient and looks for the StoreNodes
// closest nodes, where the put goes (see lookup). A resolve ends as soon
// as no closer node is left to ask and at least half of the k closest that
// answered hold the highest seq any node returned: it does not wait for
// the last queries in flight, to nodes that are most likely gone.
func (n *Node) get(ctx context.Context, key signer.PublicKey, forPut bool) (found, error) {
	var (
		mu   sync.Mutex
		f    found
		seen = make(map[netip.AddrPort]*record.SignedPacket)
	)
	target := record.Target(key)
	l := lookup{q: "get", target: target, args: krpc.MsgArgs{Target: target}, tokens: true}
	if forPut {
		l.patient, l.k = true, StoreNodes
	} else {
		l.enough = func(closest []closeNode) bool {
			mu.Lock()
			defer mu.Unlock()
			var best *record.SignedPacket
			for _, p := range seen {
				if best == nil || p.Seq > best.Seq {
					best = p
				}
			}
			held := 0
			for _, c := range closest {
				if p := seen[c.addr]; best != nil && p != nil && p.Seq == best.Seq {
					held++
				}
			}
			return held >= K/2
		}
	}
	l.reply = func(from netip.AddrPort, r *krpc.Return) {
		if r.V == nil {
			return
		}
		p, err := itemPacket(key, r)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			f.stats.Invalid++
			n.log.Debug("invalid packet from a node", "node", from, "key", key, "err", err)
			return
		}
		seen[from] = p
	}
	closest, st, err := n.lookup(ctx, l)
	f.stats.Queried, f.stats.Answered, f.stats.Messages = st.queried, st.answered, st.messages
	n.gets.Add(int64(st.messages))
	f.lookup = st
	if err != nil {
		return f, err
	}
	f.closest = closest
	mu.Lock()
	defer mu.Unlock()
	// The node's own store counts too: others may have stored it here.
	if p := n.localPacket(key); p != nil {
		f.best = p
	}
	for _, p := range seen {
		if f.best == nil || p.Seq > f.best.Seq {
			f.best = p
		}
	}
	held, older := make(map[host]bool), make(map[host]bool)
	for from, p := range seen {
		if p.Seq == f.best.Seq && p.Sig == f.best.Sig {
			held[netHost(from)] = true
		} else if p.Seq < f.best.Seq {
			older[netHost(from)] = true
		}
	}
	f.stats.Held, f.stats.Older = len(held), len(older)
	return f, nil
}

// GetQueries returns how many BEP 44 get queries the node has sent, its
// lookups' resends included: what its resolves, and the reads before its
// puts, cost the nodes closest to the keys.
func (n *Node) GetQueries() int64 { return n.gets.Load() }

// itemPacket verifies a get reply's mutable item as key's signed packet.
func itemPacket(key signer.PublicKey, r *krpc.Return) (*record.SignedPacket, error) {
	if r.K != key {
		return nil, fmt.Errorf("%w: item signed by another key", record.ErrBadSignature)
	}
	if r.Seq == nil {
		return nil, fmt.Errorf("%w: item without seq", record.ErrMalformed)
	}
	v, err := decodeString(r.V)
	if err != nil {
		return nil, err
	}
	p := &record.SignedPacket{Key: key, Seq: *r.Seq, Sig: r.Sig, Packet: v}
	if err := p.Verify(); err != nil {
		return nil, err
	}
	return p, nil
}

// Held returns the packet of key that this node holds in its store for
// the network (what a put stored on it), or nil: to see which nodes a
// publish reached.
func (n *Node) Held(key signer.PublicKey) *record.SignedPacket { return n.localPacket(key) }

// localPacket returns key's packet from this node's own store, if it holds
// a valid one.
func (n *Node) localPacket(key signer.PublicKey) *record.SignedPacket {
	it, err := n.items.Get(record.Target(key))
	if err != nil {
		return nil
	}
	var v []byte
	switch x := it.V.(type) {
	case string:
		v = []byte(x)
	case []byte:
		v = x
	default:
		return nil
	}
	p := &record.SignedPacket{Key: key, Seq: it.Seq, Sig: it.Sig, Packet: v}
	if it.K != key || p.Verify() != nil {
		return nil
	}
	return p
}

// decodeString decodes a bencoded byte string ("<len>:<bytes>"), and
// nothing else: BEP 44's v for relay is always one.
func decodeString(b []byte) ([]byte, error) {
	i := bytes.IndexByte(b, ':')
	if i < 1 || i > 4 {
		return nil, fmt.Errorf("%w: item value is not a byte string", record.ErrMalformed)
	}
	l, err := strconv.Atoi(string(b[:i]))
	if err != nil || l < 0 || (i > 1 && b[0] == '0') || len(b)-i-1 != l {
		return nil, fmt.Errorf("%w: item value is not a byte string", record.ErrMalformed)
	}
	return append([]byte(nil), b[i+1:]...), nil
}

// Resolve returns the packet with the highest valid seq that the closest
// nodes to key hold. Every answer is verified: a node with a forged or
// older packet does not hide a good one from another. It is ErrNotFound
// when nodes answered but none holds a packet, ErrNoNodes when none
// answered.
func (n *Node) Resolve(ctx context.Context, key signer.PublicKey) (*record.SignedPacket, ResolveStats, error) {
	f, err := n.get(ctx, key, false)
	if err != nil {
		return nil, f.stats, fmt.Errorf("resolve %s: %w", key, err)
	}
	if f.best == nil {
		if f.stats.Answered == 0 {
			return nil, f.stats, fmt.Errorf("resolve %s: %w (%s)", key, ErrNoNodes, f.lookup.unanswered())
		}
		return nil, f.stats, fmt.Errorf("resolve %s: %w (%d nodes answered, %d with an invalid packet)", key, ErrNotFound, f.stats.Answered, f.stats.Invalid)
	}
	return f.best, f.stats, nil
}

// Publish reads key's current packet (nil when there is none), asks update
// for the new DNS packet, which should keep the records it does not
// replace, signs it with a seq above both the current one and the clock,
// and stores it on the closest nodes. BEP 44's cas is never sent (see
// NOTES-dependencies.md). It is an error when no node acknowledged it or
// when a node refused it (ErrOutdated: it holds a newer one), and
// record.ErrTooLarge, before anything is sent, when the packet is over
// record.MaxPacketSize. Once signed, the packet is returned even with an
// error, as some nodes may hold it.
func (n *Node) Publish(ctx context.Context, key *signer.PrivateKey, update func(current *record.SignedPacket) ([]byte, error)) (*record.SignedPacket, PutStats, error) {
	pub := key.PublicKey()
	if update == nil {
		return nil, PutStats{}, fmt.Errorf("publish %s: no update function", pub)
	}
	f, err := n.get(ctx, pub, true)
	st := PutStats{Queried: f.stats.Queried, Answered: f.stats.Answered, Messages: f.stats.Messages}
	if err != nil {
		return nil, st, fmt.Errorf("publish %s: read current packet: %w", pub, err)
	}
	if f.stats.Answered == 0 {
		return nil, st, fmt.Errorf("publish %s: %w (%s)", pub, ErrNoNodes, f.lookup.unanswered())
	}
	packet, err := update(f.best)
	if err != nil {
		return nil, st, fmt.Errorf("publish %s: %w", pub, err)
	}
	var current int64
	if f.best != nil {
		current = f.best.Seq
	}
	p, err := record.Sign(key, record.NextSeq(n.now(), current), packet)
	if err != nil {
		return nil, st, fmt.Errorf("publish %s: %w", pub, err)
	}
	err = n.put(ctx, p, f.closest, &st)
	if err != nil {
		return p, st, fmt.Errorf("publish %s: %w", pub, err)
	}
	n.log.Debug("published", "key", pub, "seq", p.Seq, "acked", st.Acked, "messages", st.Messages)
	return p, st, nil
}

// Store stores an already signed packet unchanged on the closest nodes to
// its key, as a seeder does to keep records alive; it needs no private
// key. The packet is verified first. Errors are as for Publish: a node
// that holds a newer packet refuses it (ErrOutdated).
func (n *Node) Store(ctx context.Context, p *record.SignedPacket) (PutStats, error) {
	var st PutStats
	if err := p.Verify(); err != nil {
		return st, fmt.Errorf("store %s: %w", p.Key, err)
	}
	f, err := n.get(ctx, p.Key, true)
	st = PutStats{Queried: f.stats.Queried, Answered: f.stats.Answered, Messages: f.stats.Messages}
	if err != nil {
		return st, fmt.Errorf("store %s: %w", p.Key, err)
	}
	if err := n.put(ctx, p, f.closest, &st); err != nil {
		return st, fmt.Errorf("store %s: %w", p.Key, err)
	}
	return st, nil
}

// put sends p to each of the closest nodes that gave a write token and
// counts who acknowledged and who refused: anacrolix's own put only logs a
// refusal.
func (n *Node) put(ctx context.Context, p *record.SignedPacket, closest []closeNode, st *PutStats) error {
	if len(p.Packet) > record.MaxPacketSize {
		return fmt.Errorf("%w: %d bytes, at most %d", record.ErrTooLarge, len(p.Packet), record.MaxPacketSize)
	}
	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		acked    = make(map[host]bool)
		refusals = make(map[int]int) // by KRPC error code
		failed   int
		sent     = make(map[netip.AddrPort]bool)
	)
	seq := p.Seq
	for _, c := range closest {
		if c.token == "" || sent[c.addr] {
			continue
		}
		sent[c.addr] = true
		args := krpc.MsgArgs{
			K:     p.Key,
			Seq:   &seq,
			Sig:   p.Sig,
			Token: c.token,
			V:     p.Packet,
		}
		wg.Go(func() {
			res := n.store(ctx, c.addr, "put", args)
			mu.Lock()
			defer mu.Unlock()
			st.Messages += int(res.Writes)
			switch {
			case res.Err != nil:
				failed++
			case res.Reply.E != nil:
				refusals[res.Reply.E.Code]++
				st.Refused++
				n.log.Debug("put refused", "node", c.addr, "key", p.Key, "err", res.Reply.E)
			case res.Reply.R != nil:
				acked[netHost(c.addr)] = true
			default:
				failed++
			}
		})
	}
	wg.Wait()
	st.Acked = len(acked)
	if err := ctx.Err(); err != nil {
		return err
	}
	switch {
	case refusals[krpc.ErrorCodeSequenceNumberLessThanCurrent] > 0:
		return fmt.Errorf("%w: %d of %d nodes refused seq %d", ErrOutdated,
			refusals[krpc.ErrorCodeSequenceNumberLessThanCurrent], len(sent), p.Seq)
	case refusals[krpc.ErrorCodeMessageValueFieldTooBig] > 0:
		return fmt.Errorf("%w: %d nodes refused the packet as too large", record.ErrTooLarge,
			refusals[krpc.ErrorCodeMessageValueFieldTooBig])
	case len(sent) == 0:
		return fmt.Errorf("%w: no node gave a write token", ErrNotStored)
	case st.Acked == 0:
		return fmt.Errorf("%w: %d nodes asked, %d refused, %d did not answer", ErrNotStored, len(sent), st.Refused, failed)
	}
	return nil
}

// store sends a put or an announce_peer to a node that gave a write token,
// up to storeTries times while it does not answer: again after the wait
// n.rtt sets, the last time for QueryTimeout.
func (n *Node) store(ctx context.Context, to netip.AddrPort, q string, args krpc.MsgArgs) dht.QueryResult {
	var res dht.QueryResult
	writes := res.Writes
	addr := dht.NewAddr(net.UDPAddrFromAddrPort(to))
	for try := 1; try <= storeTries; try++ {
		wait := n.rtt.wait(n.queryTimeout)
		if try == storeTries {
			wait = n.queryTimeout
		}
		qctx, cancel := context.WithTimeout(ctx, wait)
		res = n.srv.Query(qctx, addr, q, dht.QueryInput{MsgArgs: args})
		cancel()
		writes += res.Writes
		if res.Err == nil || ctx.Err() != nil {
			break
		}
	}
	res.Writes = writes
	return res
}
