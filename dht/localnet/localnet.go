// Package localnet runs a private Mainline DHT on this machine: real
// dht.Nodes on 127.0.0.1 (or, with Spread, each on an address of its own
// in 127.0.0.0/8), formed from one bootstrap node, for tests,
// benchmarks and `relay demo`.
//
// It never listens on or contacts anything but loopback addresses, and never
// prints.
package localnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relay-sh/relay/dht"
)

// Config configures a local network. The zero value is a bootstrap node
// and 16 nodes.
type Config struct {
	// Nodes is the number of nodes besides the bootstrap node; zero means
	// 16.
	Nodes int
	// QueryTimeout is each node's dht.Config.QueryTimeout; zero means one
	// second (loopback answers in microseconds, but a loaded machine can
	// be slow).
	QueryTimeout time.Duration
	// ItemLifetime is each node's dht.Config.ItemLifetime, the bootstrap
	// node's too; zero means dht.DefaultItemLifetime. A test sets a few
	// seconds to see items expire.
	ItemLifetime time.Duration
	// Logger receives every node's logs; nil is silent.
	Logger *slog.Logger
	// Now is every node's clock; nil means time.Now.
	Now func() time.Time
	// Spread puts every node on an address of its own, 127.A.B.1 (each
	// in a /24 of its own), instead of all on 127.0.0.1, so that each is
	// a host of its own as a node on the Internet is. Linux routes all of
	// 127.0.0.0/8 to the loopback interface; macOS only 127.0.0.1.
	Spread bool
}

// sendRate is each node's send limit: high, as nothing leaves the host.
const sendRate = 20000

// Net is a running local network.
type Net struct {
	// Bootstrap is the bootstrap node every other node joined through.
	Bootstrap *dht.Node
	// Nodes are the nodes started with the network, then those added.
	Nodes []*dht.Node

	cfg    Config
	spread atomic.Int32 // addresses handed out, with Spread
	mu     sync.Mutex
	extra  []*dht.Node // read-only nodes added, closed with the network
}

// Start starts a bootstrap node and cfg.Nodes nodes joined through it,
// and returns once every node's routing table is full (see Full). On error
// nothing is left running.
func Start(ctx context.Context, cfg Config) (*Net, error) {
	if cfg.Nodes == 0 {
		cfg.Nodes = 16
	}
	if cfg.Nodes < 0 {
		return nil, fmt.Errorf("localnet: %d nodes", cfg.Nodes)
	}
	if cfg.QueryTimeout == 0 {
		cfg.QueryTimeout = time.Second
	}
	ln := &Net{cfg: cfg}
	bc := ln.node()
	bc.Bootstrapper = true
	b, err := dht.New(ctx, bc)
	if err != nil {
		return nil, fmt.Errorf("localnet: bootstrap node: %w", err)
	}
	ln.Bootstrap = b
	nodes := make([]*dht.Node, cfg.Nodes)
	errs := make([]error, cfg.Nodes)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range nodes {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			nodes[i], errs[i] = dht.New(ctx, ln.Config(nil))
		})
	}
	wg.Wait()
	for _, n := range nodes {
		if n != nil {
			ln.Nodes = append(ln.Nodes, n)
		}
	}
	if err := errors.Join(errs...); err != nil {
		ln.Close()
		return nil, fmt.Errorf("localnet: start nodes: %w", err)
	}
	if err := ln.Settle(ctx); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// Config returns the configuration of a node of this network: on
// 127.0.0.1, joining through its bootstrap node. configure, if not nil,
// adjusts it (read-only, a nodes file...).
func (n *Net) Config(configure func(*dht.Config)) dht.Config {
	c := n.node()
	c.Bootstrap = []string{n.Bootstrap.Addr().String()}
	if configure != nil {
		configure(&c)
	}
	return c
}

// node returns what every node of the network is configured with, the
// bootstrap node included.
func (n *Net) node() dht.Config {
	cfg := n.cfg
	listen := "127.0.0.1:0"
	if cfg.Spread {
		k := n.spread.Add(1)
		listen = fmt.Sprintf("127.%d.%d.1:0", 1+k/256, k%256)
	}
	return dht.Config{
		Listen:       listen,
		SendRate:     sendRate,
		QueryTimeout: cfg.QueryTimeout,
		ItemLifetime: cfg.ItemLifetime,
		Logger:       cfg.Logger,
		Now:          cfg.Now,
	}
}

// Add starts one more node joined through the bootstrap node and adds it
// to Nodes unless it is read-only (read-only nodes are in nobody's routing
// table). Closing it is the caller's business: Net.Close closes it too,
// and closing twice is harmless. The network is not settled again: call
// Settle when every node must know the new one.
func (n *Net) Add(ctx context.Context, configure func(*dht.Config)) (*dht.Node, error) {
	c := n.Config(configure)
	node, err := dht.New(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("localnet: add node: %w", err)
	}
	n.mu.Lock()
	if !c.ReadOnly {
		n.Nodes = append(n.Nodes, node)
	} else {
		n.extra = append(n.extra, node)
	}
	n.mu.Unlock()
	return node, nil
}

// All returns the bootstrap node and Nodes.
func (n *Net) All() []*dht.Node {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*dht.Node{n.Bootstrap}, n.Nodes...)
}

// Settle refreshes the routing tables of every node until all are full,
// or ctx ends. Every node in Nodes must be open. (A node missing from a
// table is often known to another only as "questionable", never handed
// out: refreshing every node, not only those that are not full, pings it.)
func (n *Net) Settle(ctx context.Context) error {
	for round := 1; ; round++ {
		all := n.All()
		var notFull []*dht.Node
		for _, node := range all {
			if Full(node, all) != nil {
				notFull = append(notFull, node)
			}
		}
		if n.cfg.Logger != nil {
			n.cfg.Logger.Debug("localnet: settling", "round", round, "not full", len(notFull), "nodes", len(all))
		}
		if len(notFull) == 0 {
			return nil
		}
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for _, node := range all {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				node.Refresh(ctx)
			})
		}
		wg.Wait()
		if ctx.Err() != nil {
			return fmt.Errorf("localnet: %d of %d nodes do not know their neighbours: %w (first: %v)",
				len(notFull), len(all), ctx.Err(), Full(notFull[0], all))
		}
	}
}

// Full reports whether node's routing table is full for the network of
// nodes: whether each of its buckets holds min(8, the number of other
// nodes that fall in it) of those nodes. A full node knows every node near
// it and 8 in each farther part of the ID space, which is all a routing
// table can hold. It returns nil when full, and otherwise an error naming
// the first bucket that is not.
func Full(node *dht.Node, nodes []*dht.Node) error {
	self := node.ID()
	var want, have [161]int
	members := make(map[[20]byte]bool, len(nodes))
	for _, o := range nodes {
		if o.ID() != self {
			want[dht.Bucket(self, o.ID())]++
			members[o.ID()] = true
		}
	}
	seen := make(map[[20]byte]bool)
	for _, ni := range node.Server().Nodes() {
		if members[ni.ID] && !seen[ni.ID] {
			seen[ni.ID] = true
			have[dht.Bucket(self, ni.ID)]++
		}
	}
	for i := range want {
		if have[i] < min(want[i], dht.K) {
			return fmt.Errorf("node %s: bucket %d holds %d of the %d nodes it can hold", node.Addr(), i, have[i], min(want[i], dht.K))
		}
	}
	return nil
}

// Close closes every node, the bootstrap node last.
func (n *Net) Close() error {
	n.mu.Lock()
	nodes := append(append([]*dht.Node(nil), n.Nodes...), n.extra...)
	n.mu.Unlock()
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, node := range nodes {
		wg.Go(func() { errs[i] = node.Close() })
	}
	wg.Wait()
	if n.Bootstrap != nil {
		errs = append(errs, n.Bootstrap.Close())
	}
	return errors.Join(errs...)
}
