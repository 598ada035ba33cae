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
// get hands out), so the number is capped. When the store is full, the
// items a node is responsible for win: those whose target is closest to
// its own ID, as Kademlia stores each item on the k nodes closest to it. A
// new item closer than the farthest one held takes its place; one farther
// than all of them is refused with a KRPC error, which the putter counts as
// a refusal and goes on to the other nodes. Items put by whoever floods a
// node with far targets are the ones that go.
type itemStore struct {
	now      func() time.Time
	lifetime time.Duration
	max      int
	self     krpc.ID

	mu    sync.Mutex
	items map[bep44.Target]*storedItem
	far   farthest // the same items, farthest from self first
	swept time.Time
}

type storedItem struct {
	item   *bep44.Item
	stored time.Time
	dist   krpc.ID // target XOR self
	index  int     // in far
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
		swept:    now(),
	}
}

// Put stores i, or stores it again: its lifetime starts now.
// (bep44.Wrapper.Put checks it first: a valid signature, and a seq above
// the stored item's or the same item again.) A new target when the store
// is full takes the place of the farthest item, or is refused when it is
// the farthest itself.
func (s *itemStore) Put(i *bep44.Item) error {
	t := i.Target()
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
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
		if len(s.far) == 0 || !closer(d, s.far[0].dist) {
			return errStoreFull
		}
		s.remove(s.far[0])
	}
	e := &storedItem{item: i, stored: now, dist: d}
	s.items[t] = e
	heap.Push(&s.far, e)
	return nil
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
	heap.Remove(&s.far, e.index)
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
