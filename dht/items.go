package dht

import (
	"container/heap"
	"sync"
	"time"

	"github.com/anacrolix/dht/v2/bep44"
	"github.com/anacrolix/dht/v2/krpc"
)

// itemStore is a node's BEP 44 item store: it forgets an item a lifetime
// after it was last stored, on every path, and it holds at most max items.
//
// anacrolix's bep44.Memory keeps an item until something reads it after
// its lifetime (bep44.Wrapper.Get is the only place that expires one, and
// nothing sweeps), so a long-running node held every item ever stored on
// it, and bep44.Wrapper.Put still compared a new item with an expired one
// and refused it when its seq was lower. Here an expired item is absent to
// Get and so to Put's comparison, and Put drops the expired ones from
// memory once a lifetime.
//
// Anyone may store an item on a node (a put needs only a token, which a
// get hands out), so the number is capped, and shared fairly among the
// hosts that store (netHost of a put's source: an address, or a public
// /24 or /64). Each item belongs to the host that stored it first. When the
// store is full, a new item takes the place of the farthest item (from
// the node's ID, as Kademlia stores each item on the k nodes closest to
// it) of the host that holds the most; when that is its own host, only an
// item closer than that host's farthest gets in, and a farther one is
// refused with a KRPC error, which the putter counts as a refusal. So a
// flood from one host, however its keys were ground, displaces only that
// host's own items, and a host's items are displaced only by hosts that
// hold fewer. (10,500 puts from one address with targets ground near the
// node's ID once evicted the one real record.)
type itemStore struct {
	now      func() time.Time
	lifetime time.Duration
	max      int
	self     krpc.ID

	mu     sync.Mutex
	items  map[bep44.Target]*storedItem
	owners map[host]*farthest // each host's items, farthest from self first
	swept  time.Time
	// from is the host of the put being served: anacrolix calls Put under
	// its server's lock right after the query hook (Node.onQuery) that
	// sets it.
	from host
}

type storedItem struct {
	item   *bep44.Item
	stored time.Time
	dist   krpc.ID // target XOR self
	owner  host
	index  int // in owners[owner]
}

// errStoreFull is the answer to a put that the store has no room for:
// KRPC's generic server error, as other implementations answer.
var errStoreFull = krpc.Error{Code: krpc.ErrorCodeServerError, Msg: "item store full"}

var _ bep44.Store = (*itemStore)(nil)

func newItemStore(now func() time.Time, lifetime time.Duration, max int, self krpc.ID) *itemStore {
	return &itemStore{
		now:      now,
		lifetime: lifetime,
		max:      max,
		self:     self,
		items:    make(map[bep44.Target]*storedItem),
		owners:   make(map[host]*farthest),
		swept:    now(),
	}
}

// putFrom says that the next Put is from h.
func (s *itemStore) putFrom(h host) {
	s.mu.Lock()
	s.from = h
	s.mu.Unlock()
}

// Put stores i, or stores it again: its lifetime starts now.
// (bep44.Wrapper.Put checks it first: a valid signature, and a seq above
// the stored item's or the same item again.) A new target when the store
// is full takes the place of another item or is refused, as itemStore
// says.
func (s *itemStore) Put(i *bep44.Item) error {
	t := i.Target()
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	from := s.from
	s.from = host{}
	if e, ok := s.items[t]; ok {
		e.item, e.stored = i, now
		return nil
	}
	// Expired items leave once a lifetime, or once a minute while the
	// store is full: not at every put, which a flood of puts would turn
	// into a scan of the whole store each.
	if since := now.Sub(s.swept); since >= s.lifetime || len(s.items) >= s.max && since >= time.Minute {
		s.sweep(now)
	}
	d := distance(t, s.self)
	if len(s.items) >= s.max {
		victim := s.victim(from)
		if victim == nil || victim.owner == from && !closer(d, victim.dist) {
			return errStoreFull
		}
		s.remove(victim)
	}
	e := &storedItem{item: i, stored: now, dist: d, owner: from}
	s.items[t] = e
	h := s.owners[from]
	if h == nil {
		h = new(farthest)
		s.owners[from] = h
	}
	heap.Push(h, e)
	return nil
}

// victim returns the item a new one from host from would replace in a
// full store: the farthest item of the host holding the most (from's own
// when from holds as many), of the farthest such host's when several do.
func (s *itemStore) victim(from host) *storedItem {
	most := 0
	if h := s.owners[from]; h != nil {
		most = h.Len()
	}
	var v *storedItem
	if most > 0 {
		v = (*s.owners[from])[0]
	}
	for o, h := range s.owners {
		switch e := (*h)[0]; {
		case o == from:
		case h.Len() > most:
			most, v = h.Len(), e
		case h.Len() == most && v != nil && v.owner != from && closer(v.dist, e.dist):
			v = e
		}
	}
	return v
}

// Get returns the item stored under t, or bep44.ErrItemNotFound when there
// is none or it has expired.
func (s *itemStore) Get(t bep44.Target) (*bep44.Item, error) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.items[t]
	if !ok {
		return nil, bep44.ErrItemNotFound
	}
	if s.expired(e, now) {
		s.remove(e)
		return nil, bep44.ErrItemNotFound
	}
	return e.item, nil
}

// Del forgets the item stored under t.
func (s *itemStore) Del(t bep44.Target) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.items[t]; ok {
		s.remove(e)
	}
	return nil
}

// len is the number of items in memory, expired ones included.
func (s *itemStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.items)
}

func (s *itemStore) sweep(now time.Time) {
	for _, e := range s.items {
		if s.expired(e, now) {
			s.remove(e)
		}
	}
	s.swept = now
}

func (s *itemStore) remove(e *storedItem) {
	delete(s.items, e.item.Target())
	h := s.owners[e.owner]
	heap.Remove(h, e.index)
	if h.Len() == 0 {
		delete(s.owners, e.owner)
	}
}

func (s *itemStore) expired(e *storedItem, now time.Time) bool {
	return now.Sub(e.stored) >= s.lifetime
}

// distance is Kademlia's XOR distance between a target and a node ID.
func distance(t bep44.Target, id krpc.ID) (d krpc.ID) {
	for i := range d {
		d[i] = t[i] ^ id[i]
	}
	return d
}

// closer reports whether distance a is less than distance b.
func closer(a, b krpc.ID) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

// farthest is a heap of stored items, the farthest from the node first.
type farthest []*storedItem

func (h farthest) Len() int           { return len(h) }
func (h farthest) Less(i, j int) bool { return closer(h[j].dist, h[i].dist) }
func (h farthest) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *farthest) Push(x any) {
	e := x.(*storedItem)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *farthest) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}
