package localnet_test

import (
	"context"
	"testing"
	"time"

	"github.com/relay-sh/relay/dht"
	"github.com/relay-sh/relay/dht/localnet"
)

func TestStartIsFull(t *testing.T) {
	start := time.Now()
	net := localnet.ForTest(t, localnet.Config{Nodes: 32})
	t.Logf("33 nodes formed in %v", time.Since(start))
	all := net.All()
	if len(all) != 33 {
		t.Fatalf("%d nodes, want 33", len(all))
	}
	for _, n := range all {
		if !n.Addr().Addr().IsLoopback() {
			t.Errorf("node on %v, not 127.0.0.1", n.Addr())
		}
		if err := localnet.Full(n, all); err != nil {
			t.Error(err)
		}
	}
}

func TestAddAndSettle(t *testing.T) {
	net := localnet.ForTest(t, localnet.Config{Nodes: 8})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := net.Add(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	ro, err := net.Add(ctx, func(c *dht.Config) { c.ReadOnly = true })
	if err != nil {
		t.Fatal(err)
	}
	if got := len(net.All()); got != 10 {
		t.Fatalf("%d nodes in the network, want 10 (the read-only one is not)", got)
	}
	if err := net.Settle(ctx); err != nil {
		t.Fatal(err)
	}
	for _, o := range net.All() {
		if err := localnet.Full(o, net.All()); err != nil {
			t.Error(err)
		}
	}
	_, _ = n, ro // closed by the network
}

func TestStartCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := localnet.Start(ctx, localnet.Config{Nodes: 4}); err == nil {
		t.Fatal("a network started with a cancelled context")
	}
}
