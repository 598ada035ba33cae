package dht_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relay-sh/relay/dht"
	"github.com/relay-sh/relay/internal/simnet"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
)

// BenchmarkSimulatedLookups runs resolves and publishes on a simulated
// Internet (internal/simnet: 80 ms median round trip, 3% loss) of 1,000
// DHT nodes (300 without RELAY_BENCH_BIG) that refreshed their routing
// tables once, of which 30% are then gone without notice. Each iteration
// resolves a published key from a random live node, 25 at once; then 100
// new keys are published from random live nodes, 10 at once, and for each
// the benchmark counts how many of the 20 live nodes closest to it (by
// their real IDs) hold it. It reports the share of resolves that found the
// packet, their median, 90th and 99th percentile latency and the get
// queries a resolve sent (resends included, counted on the nodes'
// sockets), and the share of publishes held by at least 8 of the 20
// closest and the get and put queries a publish sent. The DHT rows of
// BenchmarkFleet (in the root package) measure the same on the fleet's
// network; this one runs without the fleet, in a few minutes:
//
//	RELAY_BENCH_BIG=1 go test -run '^$' -bench SimulatedLookups -benchtime 1000x ./dht/
func BenchmarkSimulatedLookups(b *testing.B) {
	nodes := 300
	if os.Getenv("RELAY_BENCH_BIG") != "" {
		nodes = 1000
	}
	ctx := ctxFor(b, 30*time.Minute)
	start := time.Now()
	w := newSimDHT(b, ctx, simnet.Config{Loss: 0.03, Seed: 19}, nodes, 0.3)
	b.Logf("%d nodes joined and refreshed in %s, %d alive; load %s", nodes, time.Since(start).Round(time.Second), len(w.live), loadAverage())
	key := newKey(b)
	if _, _, err := w.random().Publish(ctx, key, setRelease(key.PublicKey(), release(b, "stable", "1.0.0"))); err != nil {
		b.Fatal(err)
	}
	var (
		mu     sync.Mutex
		lat    []time.Duration
		failed int
		wg     sync.WaitGroup
		sem    = make(chan struct{}, 25)
		gets   = w.sent.get.Load()
	)
	for b.Loop() {
		sem <- struct{}{}
		n := w.random()
		wg.Go(func() {
			defer func() { <-sem }()
			t := time.Now()
			_, _, err := n.Resolve(ctx, key.PublicKey())
			d := time.Since(t)
			mu.Lock()
			defer mu.Unlock()
			lat = append(lat, d)
			if err != nil {
				failed++
				if failed <= 3 {
					b.Logf("resolve failed after %s: %v", d.Round(time.Millisecond), err)
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	gets = w.sent.get.Load() - gets
	r := summarize(lat, failed, gets)
	b.Logf("%d resolves: %s; load %s", len(lat), r, loadAverage())
	b.ReportMetric(r.resolved, "%-resolved")
	b.ReportMetric(r.p50, "ms-resolve-p50")
	b.ReportMetric(r.p90, "ms-resolve-p90")
	b.ReportMetric(r.p99, "ms-resolve-p99")
	b.ReportMetric(r.queries, "queries/resolve")

	p := w.publishReach(ctx, b, 100)
	b.Logf("publishes: %s; load %s", p, loadAverage())
	b.ReportMetric(p.share8, "%-puts-reach-8of20")
	b.ReportMetric(p.gets, "gets/publish")
	b.ReportMetric(p.puts, "puts/publish")
	b.ReportMetric(0, "ns/op")
}

// resolves is what a benchmark's resolves measured.
type resolves struct {
	resolved      float64 // percent
	p50, p90, p99 float64 // ms
	queries       float64 // get queries sent a resolve
}

func summarize(lat []time.Duration, failed int, gets int64) resolves {
	slices.Sort(lat)
	at := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Milliseconds()) }
	return resolves{100 * float64(len(lat)-failed) / float64(len(lat)), at(0.5), at(0.9), at(0.99), float64(gets) / float64(len(lat))}
}

func (r resolves) String() string {
	return fmt.Sprintf("%.1f%% resolved, median %.0f ms, p90 %.0f ms, p99 %.0f ms, %.1f queries each", r.resolved, r.p50, r.p90, r.p99, r.queries)
}

// simDHT is a DHT network on a simulated Internet.
type simDHT struct {
	net  *simnet.Network
	live []*dht.Node // open, not behind NAT, reachable
	sent queryCount  // the queries every node sent
}

// queryCount counts KRPC queries by method.
type queryCount struct{ get, put, other atomic.Int64 }

// countingConn counts the KRPC queries sent through it.
type countingConn struct {
	net.PacketConn
	count *queryCount
}

func (c countingConn) WriteTo(b []byte, to net.Addr) (int, error) {
	switch {
	case !bytes.Contains(b, []byte("1:y1:q")):
	case bytes.Contains(b, []byte("1:q3:get")):
		c.count.get.Add(1)
	case bytes.Contains(b, []byte("1:q3:put")):
		c.count.put.Add(1)
	default:
		c.count.other.Add(1)
	}
	return c.PacketConn.WriteTo(b, to)
}

// newSimDHT starts a bootstrap node and nodes DHT nodes on a simulated
// network, lets each refresh its routing table once the others joined
// (as its maintenance would in its first minutes), then kills the share
// dead of them: their hosts drop everything, and the others keep them in
// their tables until they find out.
func newSimDHT(tb testing.TB, ctx context.Context, cfg simnet.Config, nodes int, dead float64) *simDHT {
	tb.Helper()
	w := &simDHT{net: simnet.New(cfg)}
	start := func(configure func(*dht.Config)) (*dht.Node, *simnet.Host, error) {
		h, err := w.net.NewHost(simnet.HostConfig{})
		if err != nil {
			return nil, nil, err
		}
		pc, err := h.ListenPacket("udp4", ":6881")
		if err != nil {
			return nil, nil, err
		}
		c := dht.Config{Conn: countingConn{pc, &w.sent}, JoinLater: true}
		configure(&c)
		n, err := dht.New(ctx, c)
		if err != nil {
			pc.Close()
			return nil, nil, err
		}
		tb.Cleanup(func() { n.Close() })
		return n, h, nil
	}
	boot, _, err := start(func(c *dht.Config) { c.Bootstrapper, c.SendRate = true, 5000 })
	if err != nil {
		tb.Fatal(err)
	}
	all := make([]*dht.Node, nodes)
	hosts := make([]*simnet.Host, nodes)
	errs := make([]error, nodes)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 30)
	for i := range all {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			all[i], hosts[i], errs[i] = start(func(c *dht.Config) { c.Bootstrap = []string{boot.Addr().String()} })
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			tb.Fatal(err)
		}
	}
	for _, n := range all {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			n.Refresh(ctx)
		})
	}
	wg.Wait()
	for i, p := range rand.Perm(nodes) {
		if i < int(dead*float64(nodes)) {
			hosts[p].Kill()
			all[p].Close()
			continue
		}
		if all[p].Reachable() {
			w.live = append(w.live, all[p])
		}
	}
	return w
}

func (w *simDHT) random() *dht.Node { return w.live[rand.IntN(len(w.live))] }

// closest returns the k live nodes whose IDs are closest to t.
func (w *simDHT) closest(t [20]byte, k int) []*dht.Node {
	live := slices.Clone(w.live)
	sort.Slice(live, func(i, j int) bool {
		a, b := live[i].ID(), live[j].ID()
		for x := range t {
			if da, db := a[x]^t[x], b[x]^t[x]; da != db {
				return da < db
			}
		}
		return false
	})
	return live[:min(k, len(live))]
}

// publishes is what a benchmark's publishes measured.
type publishes struct {
	holds      []int   // of each publish, how many of the 20 closest live nodes hold it; sorted
	share8     float64 // percent of publishes held by 8 or more
	gets, puts float64 // queries sent a publish
}

func (p publishes) String() string {
	return fmt.Sprintf("%.0f%% on >= 8 of the 20 closest live nodes, %.1f get and %.1f put queries each; held by %v", p.share8, p.gets, p.puts, p.holds)
}

// publishReach publishes count new keys from random live nodes, 10 at
// once, and counts how many of the 20 live nodes closest to each hold it
// (0 for a publish that failed).
func (w *simDHT) publishReach(ctx context.Context, tb testing.TB, count int) publishes {
	var (
		mu    sync.Mutex
		holds []int
		wg    sync.WaitGroup
		sem   = make(chan struct{}, 10)
		gets  = w.sent.get.Load()
		puts  = w.sent.put.Load()
	)
	for i := range count {
		sem <- struct{}{}
		n := w.random()
		wg.Go(func() {
			defer func() { <-sem }()
			key, err := signer.Generate(nil)
			if err != nil {
				tb.Error(err)
				return
			}
			_, _, err = n.Publish(ctx, key, setRelease(key.PublicKey(), release(tb, "stable", fmt.Sprintf("1.0.%d", i))))
			held := 0
			if err == nil {
				for _, c := range w.closest(record.Target(key.PublicKey()), 20) {
					if c.Held(key.PublicKey()) != nil {
						held++
					}
				}
			}
			mu.Lock()
			defer mu.Unlock()
			holds = append(holds, held)
		})
	}
	wg.Wait()
	slices.Sort(holds)
	ok := 0
	for _, h := range holds {
		if h >= 8 {
			ok++
		}
	}
	return publishes{holds: holds, share8: 100 * float64(ok) / float64(len(holds)),
		gets: float64(w.sent.get.Load()-gets) / float64(count), puts: float64(w.sent.put.Load()-puts) / float64(count)}
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return string(b[:len(b)-1])
}
