package dht

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/bep44"
)

// The item store, behind anacrolix's wrapper as the server puts it: an
// item lives a lifetime from its last store, an expired item is absent to
// a put too, and expired items leave memory.
func TestItemStoreLifetime(t *testing.T) {
	clock := time.Unix(1e9, 0)
	s := newItemStore(func() time.Time { return clock }, time.Hour)
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
