package dht

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/bep44"
	"github.com/anacrolix/dht/v2/krpc"
)

// The item store, behind anacrolix's wrapper as the server puts it: an
// item lives a lifetime from its last store, an expired item is absent to
// a put too, and expired items leave memory.
func TestItemStoreLifetime(t *testing.T) {
	clock := time.Unix(1e9, 0)
	s := newItemStore(func() time.Time { return clock }, time.Hour, 100, krpc.ID{})
	w := bep44.NewWrapper(s, time.Hour)
	item := func(key byte, seq int64) *bep44.Item {
		t.Helper()
		i, err := bep44.NewItem("packet", nil, seq, 0, ed25519.NewKeyFromSeed(bytes.Repeat([]byte{key}, 32)))
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	held := func(i *bep44.Item) bool {
		t.Helper()
		got, err := w.Get(i.Target())
		if err != nil && !errors.Is(err, bep44.ErrItemNotFound) {
			t.Fatal(err)
		}
		return err == nil && got.Seq == i.Seq
	}
	put := func(i *bep44.Item) {
		t.Helper()
		if err := w.Put(i); err != nil {
			t.Fatalf("put seq %d: %v", i.Seq, err)
		}
	}

	a := item(1, 2)
	put(a)
	clock = clock.Add(59 * time.Minute)
	if !held(a) {
		t.Fatal("gone before its lifetime")
	}
	put(item(1, 2)) // stored again, unchanged: its lifetime starts anew
	clock = clock.Add(59 * time.Minute)
	if !held(a) {
		t.Fatal("stored again 59 minutes ago, gone")
	}
	clock = clock.Add(time.Minute)
	if held(a) {
		t.Fatal("held a lifetime after its last store")
	}

	// bep44.Memory keeps an expired item until it is read, and a put with
	// a lower seq is compared with it and refused.
	put(item(1, 9))
	clock = clock.Add(time.Hour)
	put(item(1, 3))
	if !held(item(1, 3)) {
		t.Fatal("a put after the stored item expired is not held")
	}

	for k := byte(10); k < 20; k++ {
		put(item(k, 1))
	}
	clock = clock.Add(time.Hour)
	put(item(30, 1))
	s.mu.Lock()
	n := len(s.items)
	s.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d items in memory a lifetime after all but one were stored, want 1", n)
	}
}

// A full store keeps the items closest to the node: a closer item takes
// the farthest one's place, a farther one is refused with KRPC's server
// error, an item already held is stored again whatever the count, and an
// expired item makes room before anything is refused.
func TestItemStoreFull(t *testing.T) {
	clock := time.Unix(1e9, 0)
	var self krpc.ID // distances are the targets themselves
	s := newItemStore(func() time.Time { return clock }, time.Hour, 4, self)
	w := bep44.NewWrapper(s, time.Hour)

	// Items by distance from self, closest first.
	var items []*bep44.Item
	for k := range 40 {
		i, err := bep44.NewItem("packet", nil, 1, 0, ed25519.NewKeyFromSeed(bytes.Repeat([]byte{byte(k + 1)}, 32)))
		if err != nil {
			t.Fatal(err)
		}
		items = append(items, i)
	}
	slices.SortFunc(items, func(a, b *bep44.Item) int {
		ta, tb := a.Target(), b.Target()
		return bytes.Compare(ta[:], tb[:])
	})
	held := func() (n []int) {
		for k, i := range items {
			if _, err := s.Get(i.Target()); err == nil {
				n = append(n, k)
			}
		}
		return n
	}
	for _, k := range []int{5, 7, 9, 11} {
		if err := w.Put(items[k]); err != nil {
			t.Fatal(err)
		}
	}
	var kerr krpc.Error
	if err := w.Put(items[30]); !errors.As(err, &kerr) || kerr.Code != krpc.ErrorCodeServerError {
		t.Fatalf("a farther item into a full store: %v, want KRPC error 202", err)
	}
	if err := w.Put(items[2]); err != nil {
		t.Fatalf("a closer item into a full store: %v", err)
	}
	if got := held(); !slices.Equal(got, []int{2, 5, 7, 9}) {
		t.Fatalf("held %v, want [2 5 7 9]: the farthest gives way", got)
	}
	// The farthest held item stored again: it is held, so there is room.
	if err := w.Put(items[9]); err != nil {
		t.Fatalf("an item already held, stored again: %v", err)
	}
	clock = clock.Add(30 * time.Minute)
	for _, k := range []int{2, 5, 7} {
		if err := w.Put(items[k]); err != nil {
			t.Fatal(err)
		}
	}
	// Item 9 expires half an hour before the others: room for the far one.
	clock = clock.Add(31 * time.Minute)
	if err := w.Put(items[30]); err != nil {
		t.Fatalf("a far item into a store holding an expired one: %v", err)
	}
	if got := held(); !slices.Equal(got, []int{2, 5, 7, 30}) {
		t.Fatalf("held %v, want [2 5 7 30]", got)
	}
	if n := s.len(); n != 4 {
		t.Fatalf("%d items in memory, want 4", n)
	}
}
