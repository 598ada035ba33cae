package dht

import (
	"sync"
	"time"

	"github.com/anacrolix/dht/v2/bep44"
)

// itemStore is a node's BEP 44 item store: it forgets an item a lifetime
// after it was last stored, on every path. anacrolix's bep44.Memory keeps
// an item until something reads it after its lifetime (bep44.Wrapper.Get
// is the only place that expires one, and nothing sweeps), so a
// long-running node held every item ever stored on it, and
// bep44.Wrapper.Put still compared a new item with an expired one and
// refused it when its seq was lower. Here an expired item is absent to Get
// and so to Put's comparison, and Put drops the expired ones from memory
// once a lifetime.
type itemStore struct {
	now      func() time.Time
	lifetime time.Duration

	mu    sync.Mutex
	items map[bep44.Target]storedItem
	swept time.Time
}

type storedItem struct {
	item   *bep44.Item
	stored time.Time
}

var _ bep44.Store = (*itemStore)(nil)

func newItemStore(now func() time.Time, lifetime time.Duration) *itemStore {
	return &itemStore{now: now, lifetime: lifetime, items: make(map[bep44.Target]storedItem), swept: now()}
}

// Put stores i, or stores it again: its lifetime starts now.
// (bep44.Wrapper.Put checks it first: a valid signature, and a seq above
// the stored item's or the same item again.)
func (s *itemStore) Put(i *bep44.Item) error {
	t := i.Target()
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.swept) >= s.lifetime {
		for t, e := range s.items {
			if s.expired(e, now) {
				delete(s.items, t)
			}
		}
		s.swept = now
	}
	s.items[t] = storedItem{item: i, stored: now}
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
		delete(s.items, t)
		return nil, bep44.ErrItemNotFound
	}
	return e.item, nil
}

// Del forgets the item stored under t.
func (s *itemStore) Del(t bep44.Target) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.items, t)
	return nil
}

func (s *itemStore) expired(e storedItem, now time.Time) bool {
	return now.Sub(e.stored) >= s.lifetime
}
