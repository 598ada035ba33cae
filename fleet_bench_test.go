package relay

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relay-sh/relay/dht"
	"github.com/relay-sh/relay/internal/simnet"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/transfer"
)

// BenchmarkFleet runs a fleet of watchers of one key on a simulated
// Internet (internal/simnet: 80 ms median round trip, 3% loss, 30% of the
// DHT's nodes gone without notice, 30% of the watchers behind NAT, 1 MB/s
// uplinks) with 1,000 DHT nodes, for 25, 50, 100 and 200 watchers (300
// nodes and 25 watchers without RELAY_BENCH_BIG), and reports for each
// fleet: resolve success and latency over 1,000 lookups; how many of the
// 20 live nodes closest to a key hold a publish; the time from a publish
// to 50% and 99% of watchers installed while they check the DHT once an
// hour; the bundle copies the publisher uploaded for that release; and the
// queries a second that arrive at the closest nodes of the key and of its
// bundles, with the swarm (the defaults) against polling alone (NoServe),
// each watcher checking every pollInterval, counted after a first
// pollInterval of warm-up. Every client runs on the BitTorrent engine
// RELAY_ENGINE names (testEngine). docs/simulation.md has the figures.
func BenchmarkFleet(b *testing.B) {
	sizes, nodes := []int{25}, 300
	if os.Getenv("RELAY_BENCH_BIG") != "" {
		sizes, nodes = []int{25, 50, 100, 200}, 1000
	}
	if f := os.Getenv("RELAY_BENCH_FLEETS"); f != "" {
		// Some of the fleets only, e.g. "200".
		sizes = nil
		for _, s := range strings.Split(f, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n <= 0 {
				b.Fatalf("RELAY_BENCH_FLEETS: %q is not a number of watchers", s)
			}
			sizes = append(sizes, n)
		}
	}
	for range b.N {
		ctx, cancel := context.WithTimeout(context.Background(), 75*time.Minute)
		tap := &queryTap{}
		start := time.Now()
		w := newSimWorld(b, ctx, simnet.Config{Loss: 0.03, Seed: 19, UploadRate: 1 << 20, Tap: tap.see}, nodes, 0.3, true)
		b.Logf("%d DHT nodes joined in %s, %d left alive", nodes, time.Since(start).Round(time.Second), len(w.nodes))
		for _, n := range sizes {
			ok := b.Run(fmt.Sprintf("watchers=%d", n), func(b *testing.B) {
				runFleet(b, ctx, w, tap, n)
			})
			if !ok {
				break
			}
		}
		cancel()
	}
}

// pollInterval is the watchers' check interval while the DHT load is
// measured: DefaultInterval (10 minutes) scaled down 20 times, so that a
// minute holds as many checks as 20 minutes would; loadWindow is how long
// the load is counted.
const (
	pollInterval = DefaultInterval / 20
	loadWindow   = time.Minute
)

// fleetBundle is the size of a release's file: big enough that the
// protocol's messages are a small part of what a copy costs.
const fleetBundle = 1 << 20

func runFleet(b *testing.B, ctx context.Context, w *simWorld, tap *queryTap, size int) {
	key, err := signer.Generate(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("uptime: %s", loadAverage())

	// The publisher publishes and seeds, and checks the DHT as `relay
	// seed` does by default.
	pub, pubHost := w.client(ctx, false, 0)
	publish := func(v string) *Published {
		p, err := pub.Publish(ctx, PublishOptions{Key: key, Version: record.MustParseVersion(v),
			Sources: []transfer.Source{{Path: randomRelease(b, v)}}})
		if err != nil {
			b.Fatal(err)
		}
		return p
	}
	p1 := publish("1.0.0")
	fctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	wg.Go(func() {
		pub.Seed(fctx, SeedOptions{Key: key, Follow: []Follow{{Key: key.PublicKey(), Channel: "stable"}}})
	})

	// The fleet, 30% behind NAT, started 30 at a time.
	clients := make([]*Client, size)
	var cwg sync.WaitGroup
	sem := make(chan struct{}, 30)
	for i := range clients {
		sem <- struct{}{}
		cwg.Go(func() {
			defer func() { <-sem }()
			clients[i], _ = w.client(ctx, i%10 < 3, DefaultServeRate) // as relay watch serves
		})
	}
	cwg.Wait()
	installs := newInstallLog()
	watch := func(interval time.Duration, noServe bool) (stop func()) {
		wctx, cancel := context.WithCancel(fctx)
		var wwg sync.WaitGroup
		for i, c := range clients {
			out := filepath.Join(b.TempDir(), "out")
			wwg.Go(func() {
				c.Watch(wctx, WatchOptions{FetchOptions: FetchOptions{Key: key.PublicKey(), Out: out},
					Interval: interval, NoServe: noServe, OnEvent: func(e Event) {
						if e.Kind == EventInstalled {
							installs.add(e.Version.String(), i)
						}
					}})
			})
		}
		return func() { cancel(); wwg.Wait() }
	}

	// 1.0.0: each watcher's first check finds it.
	stopWatch := watch(time.Hour, false)
	t1 := time.Now()
	installs.await(ctx, "1.0.0", size, 5*time.Minute)
	b.Logf("1.0.0 installed by %d of %d watchers after %s", installs.count("1.0.0"), size, time.Since(t1).Round(time.Second))

	// 2.0.0, while every watcher checks the DHT once an hour: the swarm
	// tells them.
	up := pubHost.Stats().StreamSent
	t2 := time.Now()
	p2 := publish("2.0.0")
	half, all := installs.await(ctx, "2.0.0", size, 3*time.Minute)
	time.Sleep(5 * time.Second) // what the publisher still sends to the last
	copies := float64(pubHost.Stats().StreamSent-up) / float64(p2.Bundle.Size)
	got := installs.count("2.0.0")
	b.Logf("2.0.0 installed by %d of %d watchers: 50%% after %s, 99%% after %s; the publisher uploaded %.2f copies",
		got, size, half.Sub(t2).Round(time.Millisecond), all.Sub(t2).Round(time.Millisecond), copies)
	stopWatch()
	toSeconds := func(t time.Time) float64 {
		if t.IsZero() {
			return math.Inf(1)
		}
		return t.Sub(t2).Seconds()
	}

	// DHT load at the closest nodes of the key and of its bundles: the
	// defaults, then polling alone.
	targets := [][20]byte{record.Target(key.PublicKey()), [20]byte(p1.Release.Infohash), [20]byte(p2.Release.Infohash)}
	measure := func(noServe bool) float64 {
		stop := watch(pollInterval, noServe)
		// Counted once every watch has made its first check (at its
		// start) and seeding watchers have announced: the steady state.
		time.Sleep(pollInterval)
		tap.watch(targets, w.closestTo(targets, 20))
		time.Sleep(loadWindow)
		q := tap.take()
		stop()
		return float64(q) / loadWindow.Seconds()
	}
	withSwarm := measure(false)
	alone := measure(true)
	b.Logf("queries/s at the closest nodes, each watcher checking every %s: %.1f with the swarm, %.1f polling alone", pollInterval, withSwarm, alone)

	// Resolves and publishes, from the live DHT nodes.
	lat, failed := w.resolves(ctx, key.PublicKey(), 1000)
	reach := w.publishReach(ctx, 100)
	b.Logf("resolves: %d of 1000 failed, median %s, p99 %s; publishes reaching >= 8 of the 20 closest: %.1f%%, median reach %d",
		failed, lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)*99/100].Round(time.Millisecond), reach.atLeast8*100, reach.median)

	b.ReportMetric(float64(1000-failed)/10, "%-resolved")
	b.ReportMetric(lat[len(lat)/2].Seconds()*1000, "ms-resolve-p50")
	b.ReportMetric(lat[len(lat)*99/100].Seconds()*1000, "ms-resolve-p99")
	b.ReportMetric(reach.atLeast8*100, "%-puts-reach-8of20")
	b.ReportMetric(toSeconds(half), "s-to-50%-installed")
	b.ReportMetric(toSeconds(all), "s-to-99%-installed")
	b.ReportMetric(copies, "publisher-copies")
	b.ReportMetric(withSwarm, "q/s-closest")
	b.ReportMetric(alone, "q/s-closest-polling")
	if alone > 0 {
		b.ReportMetric(withSwarm/alone, "x-polling-alone")
	}
	b.ReportMetric(0, "ns/op")
	for _, c := range clients {
		c.Close()
	}
	pub.Close()
}

// randomRelease writes a release folder with one file of fleetBundle
// random bytes.
func randomRelease(tb testing.TB, version string) string {
	dir := tb.TempDir()
	data := make([]byte, fleetBundle)
	rand.Read(data)
	if err := os.WriteFile(filepath.Join(dir, "app-"+version), data, 0o644); err != nil {
		tb.Fatal(err)
	}
	return dir
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return string(bytes.TrimSpace(b))
}

// installLog notes when each watcher installed each version.
type installLog struct {
	mu      sync.Mutex
	times   map[string][]time.Time
	seen    map[string]map[int]bool
	changed chan struct{}
}

func newInstallLog() *installLog {
	return &installLog{times: map[string][]time.Time{}, seen: map[string]map[int]bool{}, changed: make(chan struct{}, 1)}
}

func (l *installLog) add(version string, watcher int) {
	l.mu.Lock()
	if l.seen[version] == nil {
		l.seen[version] = map[int]bool{}
	}
	if !l.seen[version][watcher] {
		l.seen[version][watcher] = true
		l.times[version] = append(l.times[version], time.Now())
	}
	l.mu.Unlock()
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

func (l *installLog) count(version string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.times[version])
}

// await waits until every one of size watchers installed version, or
// limit passed, and returns when half and 99% of them had (zero if they
// did not).
func (l *installLog) await(ctx context.Context, version string, size int, limit time.Duration) (half, most time.Time) {
	timeout := time.NewTimer(limit)
	defer timeout.Stop()
wait:
	for l.count(version) < size {
		select {
		case <-l.changed:
		case <-timeout.C:
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	ts := l.times[version]
	at := func(share float64) time.Time {
		need := int(math.Ceil(share * float64(size)))
		if len(ts) < need {
			return time.Time{}
		}
		return ts[need-1]
	}
	return at(0.5), at(0.99)
}

// queryTap counts the KRPC queries that name one of the targets (a get's
// target, a get_peers' or announce_peer's infohash) and arrive at one of
// the nodes watched for it.
type queryTap struct {
	mu      sync.RWMutex
	targets [][]byte
	at      []map[netip.AddrPort]bool
	n       atomic.Int64
}

func (q *queryTap) watch(targets [][20]byte, closest []map[netip.AddrPort]bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.targets = q.targets[:0]
	for _, t := range targets {
		q.targets = append(q.targets, append([]byte("20:"), t[:]...))
	}
	q.at = closest
	q.n.Store(0)
}

func (q *queryTap) take() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.targets, q.at = nil, nil
	return q.n.Swap(0)
}

func (q *queryTap) see(_, to netip.AddrPort, b []byte) {
	if !bytes.Contains(b, []byte("1:y1:q")) {
		return
	}
	q.mu.RLock()
	defer q.mu.RUnlock()
	for i, t := range q.targets {
		if q.at[i][to] && bytes.Contains(b, t) {
			q.n.Add(1)
			return
		}
	}
}

// closestTo returns, for each target, the addresses of the k live full
// nodes (the world's, and clients' not behind NAT) whose IDs are closest
// to it.
func (w *simWorld) closestTo(targets [][20]byte, k int) []map[netip.AddrPort]bool {
	var out []map[netip.AddrPort]bool
	for _, t := range targets {
		m := map[netip.AddrPort]bool{}
		for _, n := range w.closestNodes(t, k) {
			m[netip.AddrPortFrom(w.hosts[n].Addr(), n.Addr().Port())] = true
		}
		out = append(out, m)
	}
	return out
}

// liveNodes returns the open nodes that others can query: not killed, not
// behind NAT, not read-only.
func (w *simWorld) liveNodes() []*dht.Node {
	w.mu.Lock()
	defer w.mu.Unlock()
	var live []*dht.Node
	for n, h := range w.hosts {
		if !h.Dead() && !h.NAT() && n.Reachable() {
			live = append(live, n)
		}
	}
	return live
}

func closer(a, b, t [20]byte) bool {
	for i := range t {
		if x, y := a[i]^t[i], b[i]^t[i]; x != y {
			return x < y
		}
	}
	return false
}

// resolves resolves key count times from random live world nodes, 25 at
// once, and returns the latencies, sorted, and the number that failed.
func (w *simWorld) resolves(ctx context.Context, key signer.PublicKey, count int) ([]time.Duration, int) {
	var (
		mu     sync.Mutex
		lat    []time.Duration
		failed int
		wg     sync.WaitGroup
	)
	sem := make(chan struct{}, 25)
	for range count {
		sem <- struct{}{}
		n := w.nodes[mrand.IntN(len(w.nodes))]
		wg.Go(func() {
			defer func() { <-sem }()
			start := time.Now()
			_, _, err := n.Resolve(ctx, key)
			mu.Lock()
			defer mu.Unlock()
			lat = append(lat, time.Since(start))
			if err != nil {
				failed++
			}
		})
	}
	wg.Wait()
	slices.Sort(lat)
	return lat, failed
}

type reach struct {
	atLeast8 float64 // share of publishes held by >= 8 of the 20 closest live nodes
	median   int
}

// publishReach publishes count new keys from random live world nodes, 10
// at once, and counts for each how many of the 20 live nodes closest to it
// hold it.
func (w *simWorld) publishReach(ctx context.Context, count int) reach {
	var (
		mu    sync.Mutex
		holds []int
		wg    sync.WaitGroup
	)
	sem := make(chan struct{}, 10)
	for range count {
		sem <- struct{}{}
		n := w.nodes[mrand.IntN(len(w.nodes))]
		wg.Go(func() {
			defer func() { <-sem }()
			key, err := signer.Generate(rand.Reader)
			if err != nil {
				return
			}
			r := record.Release{Channel: "stable", Version: record.MustParseVersion("1.0.0"), Size: 1,
				Infohash: record.Infohash{1}, Manifest: record.SHA256([]byte("m")), Expires: time.Now().Add(DefaultExpires)}
			_, _, err = n.Publish(ctx, key, record.ReleaseUpdate(key.PublicKey(), r))
			held := 0
			if err == nil {
				closest := w.closestNodes(record.Target(key.PublicKey()), 20)
				for _, c := range closest {
					if c.Held(key.PublicKey()) != nil {
						held++
					}
				}
			}
			mu.Lock()
			holds = append(holds, held)
			mu.Unlock()
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
	return reach{atLeast8: float64(ok) / float64(len(holds)), median: holds[len(holds)/2]}
}

func (w *simWorld) closestNodes(t [20]byte, k int) []*dht.Node {
	live := w.liveNodes()
	sort.Slice(live, func(i, j int) bool { return closer(live[i].ID(), live[j].ID(), t) })
	return live[:min(k, len(live))]
}
