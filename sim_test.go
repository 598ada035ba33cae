package relay

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/relay-sh/relay/dht"
	"github.com/relay-sh/relay/internal/simnet"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/transfer"
)

// simWorld is a DHT of real relay nodes on a simulated Internet
// (internal/simnet), and relay clients on it.
type simWorld struct {
	tb    testing.TB
	net   *simnet.Network
	boot  *dht.Node
	mu    sync.Mutex
	nodes []*dht.Node // live, the bootstrap node's first
	hosts map[*dht.Node]*simnet.Host
}

// newSimWorld starts a bootstrap node and nodes DHT nodes on a network of
// cfg, with settled, refreshes every node's routing table once all have
// joined, then kills the share dead of them without notice: they stay in
// the others' routing tables. Everything closes when the test ends.
func newSimWorld(tb testing.TB, ctx context.Context, cfg simnet.Config, nodes int, dead float64, settled bool) *simWorld {
	tb.Helper()
	w := &simWorld{tb: tb, net: simnet.New(cfg), hosts: make(map[*dht.Node]*simnet.Host)}
	boot, _, err := w.newNode(ctx, false, func(c *dht.Config) {
		// A router of the public DHT answers thousands a second.
		c.Bootstrapper, c.Bootstrap, c.SendRate = true, nil, 5000
	})
	if err != nil {
		tb.Fatal(err)
	}
	w.boot = boot
	started := make([]*dht.Node, nodes)
	errs := make([]error, nodes)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 30)
	for i := range started {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			started[i], _, errs[i] = w.newNode(ctx, false, nil)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			tb.Fatal(err)
		}
	}
	// A network that has run a while: each node has refreshed its routing
	// table once the others joined (as its maintenance would within
	// minutes), so that the nodes closest to a key are known to those
	// near it. (A node is read-only until answers show it reachable, and
	// nobody keeps a read-only node: what it learns when joining, others
	// learn of it only later.)
	for _, n := range started {
		if !settled {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			n.Refresh(ctx)
		})
	}
	wg.Wait()
	// Gone without notice: a share of the nodes others know.
	perm := rand.Perm(len(started))
	for _, i := range perm[:int(dead*float64(len(started)))] {
		w.hosts[started[i]].Kill()
		started[i].Close()
		started[i] = nil
	}
	w.mu.Lock()
	for _, n := range started {
		if n != nil {
			w.nodes = append(w.nodes, n)
		}
	}
	w.mu.Unlock()
	return w
}

// newNode starts a DHT node on a new host, joined through the bootstrap
// node; it is closed when the test ends.
func (w *simWorld) newNode(ctx context.Context, nat bool, configure func(*dht.Config)) (*dht.Node, *simnet.Host, error) {
	h, err := w.net.NewHost(simnet.HostConfig{NAT: nat})
	if err != nil {
		return nil, nil, err
	}
	pc, err := h.ListenPacket("udp4", ":6881")
	if err != nil {
		return nil, nil, err
	}
	// JoinLater: a join whose every answer was late on a loaded machine
	// (dozens of nodes join at once here) is finished by the node's
	// first lookups, as on a network that was away.
	cfg := dht.Config{Conn: pc, JoinLater: true}
	if w.boot != nil {
		cfg.Bootstrap = []string{w.boot.Addr().String()}
	}
	if configure != nil {
		configure(&cfg)
	}
	n, err := dht.New(ctx, cfg)
	if err != nil {
		pc.Close()
		return nil, nil, fmt.Errorf("simulated dht node: %w", err)
	}
	w.tb.Cleanup(func() { n.Close() })
	w.mu.Lock()
	w.hosts[n] = h
	w.mu.Unlock()
	return n, h, nil
}

// simInitialSeeding, from RELAY_INITIAL_SEEDING=1, gives the simulated
// world's clients Config.InitialSeeding (the wire engine's publisher
// serves its releases in initial seeding).
var simInitialSeeding = os.Getenv("RELAY_INITIAL_SEEDING") == "1"

// client opens a relay client with a DHT node of its own on a new host,
// behind NAT if nat, uploading at most upload bytes a second (zero: no
// cap but the host's uplink).
func (w *simWorld) client(ctx context.Context, nat bool, upload int64) (*Client, *simnet.Host) {
	w.tb.Helper()
	n, h, err := w.newNode(ctx, nat, nil)
	if err != nil {
		w.tb.Fatal(err)
	}
	c, err := Open(ctx, Config{DataDir: w.tb.TempDir(), Network: n, PeerNetwork: h, UploadRate: upload, Engine: testEngine,
		InitialSeeding: simInitialSeeding})
	if err != nil {
		w.tb.Fatal(err)
	}
	w.tb.Cleanup(func() { c.Close() })
	return c, h
}

// TestSimulatedInternet: on a simulated Internet (80 ms median round
// trip, 3% loss, 30% of the DHT's nodes gone without notice, watchers
// behind NAT), resolves of a published key succeed from nodes that never
// saw it, and watchers that check the DHT once an hour install a new
// release they never polled for: the publisher tells its swarm as it
// publishes, and they tell each other.
func TestSimulatedInternet(t *testing.T) {
	ctx := ctxFor(t, 4*time.Minute)
	t0 := time.Now()
	w := newSimWorld(t, ctx, simnet.Config{Loss: 0.03, Seed: 19}, 60, 0.3, false)
	key := testKey(t, 19)
	t.Logf("%d nodes joined in %s", 60, time.Since(t0).Round(time.Millisecond))

	pub, _ := w.client(ctx, false, 0)
	p1, err := pub.Publish(ctx, PublishOptions{Key: key, Version: record.MustParseVersion("1.0.0"),
		Sources: []transfer.Source{{Path: releaseDir(t, "1.0.0")}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("1.0.0 stored on %d nodes at %s", p1.Stats.Acked, time.Since(t0).Round(time.Millisecond))

	// Resolves from fresh read-only nodes, all at once.
	const resolvers = 8
	errs := make(chan error, resolvers)
	for range resolvers {
		go func() {
			n, _, err := w.newNode(ctx, false, func(c *dht.Config) { c.ReadOnly = true })
			if err == nil {
				var p *record.SignedPacket
				p, _, err = n.Resolve(ctx, key.PublicKey())
				if err == nil && p.Seq != p1.Packet.Seq {
					err = fmt.Errorf("resolved seq %d, want %d", p.Seq, p1.Packet.Seq)
				}
			}
			errs <- err
		}()
	}
	for range resolvers {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}

	t.Logf("resolved at %s", time.Since(t0).Round(time.Millisecond))

	// The publisher serves its releases (its client stays open); three
	// watchers, one behind NAT, check the DHT once an hour.
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 3)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	type watcher struct {
		c      *Client
		events chan Event
	}
	var watchers []watcher
	for i := range 3 {
		c, _ := w.client(ctx, i == 2, 0)
		events := make(chan Event, 64)
		watchers = append(watchers, watcher{c, events})
		wg.Go(func() {
			done <- c.Watch(wctx, WatchOptions{FetchOptions: FetchOptions{Key: key.PublicKey(), Out: t.TempDir()},
				Interval: time.Hour, OnEvent: func(e Event) {
					select {
					case events <- e:
					default:
					}
				}})
		})
	}
	for _, wt := range watchers {
		awaitEvent(t, wt.events, EventInstalled, "1.0.0")
	}

	t.Logf("1.0.0 installed at %s", time.Since(t0).Round(time.Millisecond))
	_, err = pub.Publish(ctx, PublishOptions{Key: key, Version: record.MustParseVersion("2.0.0"),
		Sources: []transfer.Source{{Path: releaseDir(t, "2.0.0")}}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i, wt := range watchers {
		awaitEvent(t, wt.events, EventInstalled, "2.0.0")
		t.Logf("watcher %d (NAT %v) installed 2.0.0 %s after it was published", i, i == 2, time.Since(start).Round(time.Millisecond))
	}
	stop()
	for range 3 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
