package dht_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/relay-sh/relay/dht/localnet"
)

// The benchmarks run on a local network of 64 nodes and a bootstrap node
// and report, per operation, the wall time (ns/op, and ms/op), the packets
// sent (msgs/op) and the nodes reached:
//
//	go test -run '^$' -bench . -benchtime 200x ./dht/
func BenchmarkResolve(b *testing.B) {
	net := localnet.ForTest(b, localnet.Config{Nodes: 64})
	ctx := context.Background()
	key := newKey(b)
	if _, _, err := net.Nodes[0].Publish(ctx, key, setRelease(key.PublicKey(), release(b, "stable", "1.0.0"))); err != nil {
		b.Fatal(err)
	}
	var ops, msgs, queried, answered, held int
	start := time.Now()
	for b.Loop() {
		n := net.Nodes[1+ops%(len(net.Nodes)-1)]
		_, st, err := n.Resolve(ctx, key.PublicKey())
		if err != nil {
			b.Fatal(err)
		}
		ops++
		msgs += st.Messages
		queried += st.Queried
		answered += st.Answered
		held += st.Held
	}
	report(b, ops, time.Since(start), map[string]int{"msgs/op": msgs, "queried/op": queried, "answered/op": answered, "held/op": held})
}

func BenchmarkPublish(b *testing.B) {
	net := localnet.ForTest(b, localnet.Config{Nodes: 64})
	ctx := context.Background()
	key := newKey(b)
	var ops, msgs, queried, acked int
	start := time.Now()
	for b.Loop() {
		n := net.Nodes[ops%len(net.Nodes)]
		_, st, err := n.Publish(ctx, key, setRelease(key.PublicKey(), release(b, "stable", fmt.Sprintf("1.0.%d", ops))))
		if err != nil {
			b.Fatal(err)
		}
		ops++
		msgs += st.Messages
		queried += st.Queried
		acked += st.Acked
	}
	report(b, ops, time.Since(start), map[string]int{"msgs/op": msgs, "queried/op": queried, "acked/op": acked})
}

func report(b *testing.B, ops int, took time.Duration, totals map[string]int) {
	if ops == 0 {
		return
	}
	b.ReportMetric(float64(took.Microseconds())/1000/float64(ops), "ms/op")
	for unit, total := range totals {
		b.ReportMetric(float64(total)/float64(ops), unit)
	}
}
