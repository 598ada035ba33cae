package dht

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/krpc"
	peer_store "github.com/anacrolix/dht/v2/peer-store"
	"github.com/relay-sh/relay/record"
)

// Announce tells the closest nodes to infohash that this host serves it on
// port (BEP 5 announce_peer). A zero port announces the node's own UDP
// port (implied_port), for a torrent client that shares the node's socket.
// It is ErrNotStored when no node accepted the announce.
func (n *Node) Announce(ctx context.Context, infohash record.Infohash, port int) error {
	if port < 0 || port > 0xffff {
		return fmt.Errorf("announce %s: port %d out of range", infohash, port)
	}
	closest, _, err := n.lookup(ctx, lookup{
		q:       "get_peers",
		target:  krpc.ID(infohash),
		args:    krpc.MsgArgs{InfoHash: krpc.ID(infohash)},
		tokens:  true,
		patient: true,
		k:       StoreNodes,
	})
	if err != nil {
		return fmt.Errorf("announce %s: %w", infohash, err)
	}
	implied := port == 0
	if implied {
		port = int(n.addr.Port())
	}
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		acked = make(map[netip.AddrPort]bool)
		sent  = make(map[netip.AddrPort]bool)
	)
	for _, c := range closest {
		if c.token == "" || sent[c.addr] {
			continue
		}
		sent[c.addr] = true
		args := krpc.MsgArgs{InfoHash: krpc.ID(infohash), Port: &port, ImpliedPort: implied, Token: c.token}
		wg.Go(func() {
			res := n.store(ctx, c.addr, "announce_peer", args)
			if res.Err == nil && res.Reply.R != nil {
				mu.Lock()
				acked[c.addr] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("announce %s: %w", infohash, err)
	}
	if len(acked) == 0 {
		return fmt.Errorf("announce %s: %w (%d nodes asked)", infohash, ErrNotStored, len(sent))
	}
	n.log.Debug("announced", "infohash", infohash, "port", port, "acked", len(acked))
	return nil
}

// Peers returns the peers that the closest nodes to infohash (and this
// node) know for it, each once. It is ErrNoNodes when no node answered.
// The node remembers those closest nodes for PeersAgain.
func (n *Node) Peers(ctx context.Context, infohash record.Infohash) ([]netip.AddrPort, error) {
	found := n.storedPeers(infohash)
	closest, st, err := n.lookup(ctx, lookup{
		q:      "get_peers",
		target: krpc.ID(infohash),
		args:   krpc.MsgArgs{InfoHash: krpc.ID(infohash)},
		reply:  func(_ netip.AddrPort, r *krpc.Return) { found.addValues(r.Values) },
	})
	if err != nil {
		return nil, fmt.Errorf("find peers of %s: %w", infohash, err)
	}
	if st.answered == 0 && found.len() == 0 {
		return nil, fmt.Errorf("find peers of %s: %w (%s)", infohash, ErrNoNodes, st.unanswered())
	}
	n.near.set(infohash, closest, n.now())
	return found.list(), nil
}

// PeersAgain returns the peers known now to the closest nodes to infohash
// that the last Peers of it found: one round of queries to count of them
// (all when count is 0 or more than they are), the next ones in turn at
// each call, where a lookup walks the DHT again. A peer announces itself
// on every one of those nodes, so a host that cannot be dialled (behind
// NAT) learns of a new peer at the cost of a few packets; asking a few
// nodes more often finds it sooner for the same queries a node gets.
// With no such Peers in the last nearLife, or when all of those nodes
// were asked and none answered, it is Peers.
func (n *Node) PeersAgain(ctx context.Context, infohash record.Infohash, count int) ([]netip.AddrPort, error) {
	nodes, all := n.near.get(infohash, n.now(), count)
	if len(nodes) == 0 {
		return n.Peers(ctx, infohash)
	}
	found := n.storedPeers(infohash)
	var (
		wg       sync.WaitGroup
		answered atomic.Int32
	)
	args := krpc.MsgArgs{InfoHash: krpc.ID(infohash)}
	for _, ap := range nodes {
		wg.Go(func() {
			qctx, cancel := context.WithTimeout(ctx, n.rtt.wait(n.queryTimeout))
			defer cancel()
			res := n.srv.Query(qctx, dht.NewAddr(net.UDPAddrFromAddrPort(ap)), "get_peers", dht.QueryInput{MsgArgs: args})
			if res.Err != nil || res.Reply.R == nil {
				return
			}
			answered.Add(1)
			found.addValues(res.Reply.R.Values)
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("find peers of %s: %w", infohash, err)
	}
	if answered.Load() == 0 && all {
		n.near.forget(infohash)
		return n.Peers(ctx, infohash)
	}
	return found.list(), nil
}

// storedPeers returns a peerSet holding the peers this node's own store
// holds for infohash: a lookup adds what other nodes know.
func (n *Node) storedPeers(infohash record.Infohash) *peerSet {
	found := newPeerSet()
	for _, p := range n.peers.GetPeers(peer_store.InfoHash(infohash)) {
		found.add(addrPort(p.IP, p.Port))
	}
	return found
}

// A peerSet collects the peers of a lookup, each once. A node names at
// most maxPeersReturned peers, and a set keeps at most maxPeersFound: a
// hostile node's answer full of made-up peers costs little.
type peerSet struct {
	mu sync.Mutex
	m  map[netip.AddrPort]bool
}

func newPeerSet() *peerSet { return &peerSet{m: make(map[netip.AddrPort]bool)} }

func (s *peerSet) add(ap netip.AddrPort) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) < maxPeersFound && ap.IsValid() && !ap.Addr().IsUnspecified() {
		s.m[ap] = true
	}
}

func (s *peerSet) addValues(vs []krpc.NodeAddr) {
	for _, p := range vs[:min(len(vs), maxPeersReturned)] {
		s.add(addrPort(p.IP, p.Port))
	}
}

func (s *peerSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// list returns the peers, sorted.
func (s *peerSet) list() []netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]netip.AddrPort, 0, len(s.m))
	for ap := range s.m {
		out = append(out, ap)
	}
	slices.SortFunc(out, netip.AddrPort.Compare)
	return out
}

// nearNodes remembers, for the infohashes a node looked up peers of last,
// the closest nodes that answered: at most maxNear infohashes, each for
// nearLife (nodes come and go; a lookup again finds the new ones).
type nearNodes struct {
	mu sync.Mutex
	m  map[record.Infohash]nearEntry
}

type nearEntry struct {
	nodes []netip.AddrPort
	at    time.Time
	next  int // the node the next partial ask starts at
}

const (
	maxNear  = 1024
	nearLife = 5 * time.Minute
)

func (nn *nearNodes) set(ih record.Infohash, closest []closeNode, now time.Time) {
	nodes := make([]netip.AddrPort, 0, len(closest))
	for _, c := range closest {
		nodes = append(nodes, c.addr)
	}
	nn.mu.Lock()
	defer nn.mu.Unlock()
	if nn.m == nil {
		nn.m = make(map[record.Infohash]nearEntry)
	}
	if _, ok := nn.m[ih]; !ok && len(nn.m) >= maxNear {
		for k, e := range nn.m {
			if now.Sub(e.at) > nearLife {
				delete(nn.m, k)
			}
		}
		for k := range nn.m { // still full: forget any one
			if len(nn.m) < maxNear {
				break
			}
			delete(nn.m, k)
		}
	}
	if len(nodes) == 0 {
		delete(nn.m, ih)
		return
	}
	nn.m[ih] = nearEntry{nodes: nodes, at: now}
}

// get returns count of the nodes remembered for ih, the next in turn
// (all when count is 0 or more than they are); all says whether they are
// all of them.
func (nn *nearNodes) get(ih record.Infohash, now time.Time, count int) (nodes []netip.AddrPort, all bool) {
	nn.mu.Lock()
	defer nn.mu.Unlock()
	e, ok := nn.m[ih]
	if !ok || now.Sub(e.at) > nearLife {
		return nil, false
	}
	if count <= 0 || count >= len(e.nodes) {
		return slices.Clone(e.nodes), true
	}
	for i := range count {
		nodes = append(nodes, e.nodes[(e.next+i)%len(e.nodes)])
	}
	e.next = (e.next + count) % len(e.nodes)
	nn.m[ih] = e
	return nodes, false
}

func (nn *nearNodes) forget(ih record.Infohash) {
	nn.mu.Lock()
	defer nn.mu.Unlock()
	delete(nn.m, ih)
}

const (
	// peerLifetime is how long an announced peer is kept.
	peerLifetime = 30 * time.Minute
	// maxPeersPerInfohash, maxInfohashes and maxPeers bound the store's
	// memory: about 100 bytes a peer, so 10 MB at most.
	maxPeersPerInfohash = 1000
	maxInfohashes       = 10000
	maxPeers            = 100000
	// maxPortsPerHost is the most peers of one infohash at one IP address
	// (clients behind one NAT, or on one machine), so that one host cannot
	// push the other peers of a torrent out.
	maxPortsPerHost = 64
	// maxPeersReturned is how many peers a get_peers answer carries at
	// most (8 bytes each in the reply).
	maxPeersReturned = 100
	// maxPeersOfHost is the most peers of one host (netHost), over every
	// infohash: filling the store takes maxInfohashes/maxPeersOfHost
	// networks.
	maxPeersOfHost = 1000
	// maxPeersFound is the most peers Peers returns.
	maxPeersFound = 1000
)

// peerStore is the BEP 5 peer store of a node. anacrolix's in-memory store
// keys peers by IP alone, so on one host (127.0.0.1, or behind one NAT)
// every announce replaces the last; this one keys them by IP and port.
//
// When it must drop a peer to take another, it keeps the peers that have
// announced again (they stay, as a seeder does) over those that announced
// once (often a fetch that has exited since). A host at its share replaces
// its newest peer, so its established ones (a seeder, long-running
// watchers) stay however many short-lived fetches it runs; a torrent at
// its bound drops the peer that announced once, longest ago.
type peerStore struct {
	now     func() time.Time
	mu      sync.Mutex
	m       map[peer_store.InfoHash]map[netip.AddrPort]announced
	total   int          // peers in m, over every infohash
	hosts   map[host]int // peers in m by host (netHost)
	expired time.Time    // when expireLocked last ran
}

// announced is when a peer first and last announced itself.
type announced struct{ first, last time.Time }

// again reports whether the peer announced more than once.
func (a announced) again() bool { return a.last.After(a.first) }

var _ peer_store.Interface = (*peerStore)(nil)

func newPeerStore(now func() time.Time) *peerStore {
	return &peerStore{now: now, m: make(map[peer_store.InfoHash]map[netip.AddrPort]announced), hosts: make(map[host]int)}
}

// AddPeer records that na serves ih.
func (s *peerStore) AddPeer(ih peer_store.InfoHash, na krpc.NodeAddr) {
	ap := addrPort(na.IP, na.Port)
	if !ap.IsValid() || ap.Addr().IsUnspecified() {
		return
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.m[ih][ap]; ok && now.Sub(a.last) < peerLifetime {
		a.last = now
		s.m[ih][ap] = a
		return
	} else if ok {
		s.m[ih][ap] = announced{now, now} // expired: new again
		return
	}
	if s.hosts[netHost(ap)] >= maxPeersOfHost {
		// One host serves this many torrents at most, here: more are a
		// flood, which would fill the store for everyone.
		return
	}
	if len(s.m) >= maxInfohashes || s.total >= maxPeers {
		// Full: forget the expired peers, at most once a minute (it is a
		// walk over the whole store), and refuse the new one if that
		// made no room.
		if now.Sub(s.expired) >= time.Minute {
			s.expireLocked(now)
		}
		if s.m[ih] == nil && len(s.m) >= maxInfohashes {
			return
		}
	}
	peers := s.m[ih]
	if peers == nil {
		peers = make(map[netip.AddrPort]announced)
		s.m[ih] = peers
	}
	// The peer to drop to make room: the host's newest when it has its
	// share, else the torrent's least likely to be there still.
	var victim, hostNewest netip.AddrPort
	ofHost := 0
	for p, a := range peers {
		if !victim.IsValid() || lessLikely(a, peers[victim]) {
			victim = p
		}
		if p.Addr() == ap.Addr() {
			ofHost++
			if !hostNewest.IsValid() || a.first.After(peers[hostNewest].first) {
				hostNewest = p
			}
		}
	}
	switch {
	case ofHost >= maxPortsPerHost:
		s.drop(peers, hostNewest)
	case len(peers) >= maxPeersPerInfohash:
		s.drop(peers, victim)
	case s.total >= maxPeers:
		if len(peers) == 0 {
			delete(s.m, ih)
		}
		return
	}
	peers[ap] = announced{now, now}
	s.total++
	s.hosts[netHost(ap)]++
}

// drop forgets peer ap of peers, one infohash's peers.
func (s *peerStore) drop(peers map[netip.AddrPort]announced, ap netip.AddrPort) {
	delete(peers, ap)
	s.total--
	h := netHost(ap)
	if s.hosts[h]--; s.hosts[h] <= 0 {
		delete(s.hosts, h)
	}
}

// lessLikely reports whether a peer announced as a is less likely to be
// there still than one announced as b: it announced only once, or longer
// ago.
func lessLikely(a, b announced) bool {
	if a.again() != b.again() {
		return !a.again()
	}
	return a.last.Before(b.last)
}

// GetPeers returns the peers of ih announced in the last peerLifetime,
// at most maxPeersReturned, the most likely to be there first: those that
// announced again, then the others, each by their last announce, newest
// first.
func (s *peerStore) GetPeers(ih peer_store.InfoHash) []krpc.NodeAddr {
	now := s.now()
	s.mu.Lock()
	type entry struct {
		ap netip.AddrPort
		a  announced
	}
	var live []entry
	for ap, a := range s.m[ih] {
		if now.Sub(a.last) < peerLifetime {
			live = append(live, entry{ap, a})
		} else {
			s.drop(s.m[ih], ap)
		}
	}
	if len(s.m[ih]) == 0 {
		delete(s.m, ih)
	}
	s.mu.Unlock()
	slices.SortFunc(live, func(x, y entry) int {
		switch {
		case lessLikely(y.a, x.a):
			return -1
		case lessLikely(x.a, y.a):
			return 1
		}
		return x.ap.Compare(y.ap)
	})
	out := make([]krpc.NodeAddr, 0, min(len(live), maxPeersReturned))
	for _, e := range live[:min(len(live), maxPeersReturned)] {
		out = append(out, nodeAddr(e.ap))
	}
	return out
}

func (s *peerStore) expireLocked(now time.Time) {
	s.expired = now
	for ih, peers := range s.m {
		for ap, a := range peers {
			if now.Sub(a.last) >= peerLifetime {
				s.drop(peers, ap)
			}
		}
		if len(peers) == 0 {
			delete(s.m, ih)
		}
	}
}
