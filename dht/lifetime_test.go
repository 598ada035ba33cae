package dht_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relay-sh/relay/dht"
	"github.com/relay-sh/relay/dht/localnet"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
)

// testLifetime is the item lifetime of the networks of these tests, for
// two hours.
const testLifetime = 2 * time.Second

// resolveAll resolves key from every node at once and returns what each
// found, in the order of nodes.
func resolveAll(ctx context.Context, nodes []*dht.Node, key signer.PublicKey) ([]*record.SignedPacket, []error) {
	ps := make([]*record.SignedPacket, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { ps[i], _, errs[i] = n.Resolve(ctx, key) })
	}
	wg.Wait()
	return ps, errs
}

// publishThenLeave publishes a packet for a new key from a node that then
// leaves the network, and checks that another node resolves it first. It
// returns the nodes left.
func publishThenLeave(t *testing.T, ctx context.Context, net *localnet.Net) (*signer.PrivateKey, *record.SignedPacket, []*dht.Node) {
	t.Helper()
	pub, err := net.Add(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	key := newKey(t)
	p, ps, err := pub.Publish(ctx, key, setRelease(key.PublicKey(), release(t, "stable", "1.0.0")))
	if err != nil {
		t.Fatal(err)
	}
	got, rs, err := net.Nodes[0].Resolve(ctx, key.PublicKey())
	if err != nil || got.Seq != p.Seq {
		t.Fatalf("right after the publish (%d nodes stored it): %v", ps.Acked, err)
	}
	t.Logf("published on %d nodes, %d of them answered a resolve", ps.Acked, rs.Held)
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	var left []*dht.Node
	for _, n := range net.All() {
		if n != pub {
			left = append(left, n)
		}
	}
	return key, p, left
}

// An item nobody stores again is gone from every node once its lifetime
// has passed: no node answers with it, and none finds it in its own
// store.
func TestItemExpiresAfterLifetime(t *testing.T) {
	net := localnet.ForTest(t, localnet.Config{Nodes: 12, ItemLifetime: testLifetime})
	ctx := ctxFor(t, 30*time.Second)
	start := time.Now()
	key, _, nodes := publishThenLeave(t, ctx, net)

	time.Sleep(time.Until(start.Add(testLifetime + time.Second)))
	_, errs := resolveAll(ctx, nodes, key.PublicKey())
	for i, err := range errs {
		if !errors.Is(err, dht.ErrNotFound) {
			t.Errorf("node %s, %v after the publish: %v, want ErrNotFound", nodes[i].Addr(), time.Since(start).Round(time.Millisecond), err)
		}
	}
}

// A node that stores the same packet again, without the key, keeps it
// resolvable for as long as it does, on every node; once it stops, the
// packet expires a lifetime after its last store.
func TestStoreKeepsItemPastLifetime(t *testing.T) {
	net := localnet.ForTest(t, localnet.Config{Nodes: 12, ItemLifetime: testLifetime})
	ctx := ctxFor(t, 30*time.Second)
	key, p, nodes := publishThenLeave(t, ctx, net)
	keeper := net.Nodes[1]

	var last time.Time
	for end := time.Now().Add(3 * testLifetime); time.Now().Before(end); time.Sleep(testLifetime / 4) {
		st, err := keeper.Store(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Acked < dht.K-1 {
			t.Errorf("stored again on %d nodes, want the %d closest", st.Acked, dht.K)
		}
		last = time.Now()
	}
	got, errs := resolveAll(ctx, nodes, key.PublicKey())
	for i, err := range errs {
		if err != nil || got[i].Seq != p.Seq {
			t.Errorf("node %s, three lifetimes after the publish: %v", nodes[i].Addr(), err)
		}
	}

	time.Sleep(time.Until(last.Add(testLifetime + time.Second)))
	_, errs = resolveAll(ctx, nodes, key.PublicKey())
	for i, err := range errs {
		if !errors.Is(err, dht.ErrNotFound) {
			t.Errorf("node %s, a lifetime after the last store: %v, want ErrNotFound", nodes[i].Addr(), err)
		}
	}
}

// A node stores at most MaxItems items for others, and keeps those whose
// targets are closest to its ID: here ten keys are published through a
// network whose only storing node holds three, and exactly the three
// closest can be resolved; publishes it had no room for fail, naming the
// refusal.
func TestNodeHoldsAtMostMaxItems(t *testing.T) {
	ctx := ctxFor(t, 30*time.Second)
	const max = 3
	store, err := dht.New(ctx, dht.Config{Listen: "127.0.0.1:0", Bootstrapper: true, SendRate: 1000, MaxItems: max})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	client := func() *dht.Node {
		n, err := dht.New(ctx, dht.Config{Listen: "127.0.0.1:0", Bootstrap: []string{store.Addr().String()}, ReadOnly: true, SendRate: 1000})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	pub, reader := client(), client()

	keys := make([]*signer.PrivateKey, 10)
	for i := range keys {
		keys[i] = newKey(t)
		_, _, err := pub.Publish(ctx, keys[i], setRelease(keys[i].PublicKey(), release(t, "stable", "1.0.0")))
		if err != nil && !strings.Contains(err.Error(), "refused") {
			t.Fatalf("publish %d: %v, want stored or refused", i, err)
		}
	}
	id := store.ID()
	dist := func(k *signer.PrivateKey) []byte {
		t := record.Target(k.PublicKey())
		for i := range t {
			t[i] ^= id[i]
		}
		return t[:]
	}
	slices.SortFunc(keys, func(a, b *signer.PrivateKey) int { return bytes.Compare(dist(a), dist(b)) })
	for i, k := range keys {
		_, _, err := reader.Resolve(ctx, k.PublicKey())
		if found := err == nil; found != (i < max) {
			t.Errorf("key %d by distance from the storing node: resolve: %v", i, err)
		}
	}
}
