// Package dht is relay's one place that speaks the BitTorrent Mainline DHT:
// BEP 44 mutable items (pkarr's signed packets), BEP 5 peers, BEP 43
// read-only nodes, on github.com/anacrolix/dht/v2.
//
// A Node publishes, resolves and re-stores signed packets so that any
// Mainline DHT implementation can read what relay writes and the reverse;
// it announces and finds peers of an infohash; it can serve as the
// bootstrap node of a private network. The package works around the
// measured traps of the library (NOTES-dependencies.md): each node has its
// own send limiter, a bootstrap node pings whoever queries it, node lists
// are deduplicated (IPv4 nodes repeated as ::ffff:a.b.c.d), puts count
// acknowledgements and refusals, BEP 44 cas is never sent, the peer store
// keys peers by address and port, and short-lived processes run read-only
// nodes. More were found here: anacrolix answers find_node and get
// with the nodes closest to the zero ID, scanning from the target's bucket
// outwards only (fixed in the query hook), and its table maintainer leaks
// a goroutine a minute while the routing table is empty (it is started
// only once the table is not), and it keeps state that grows with what
// anyone sends (a count of every query method name, forever), so every
// datagram passes the node's guard first (guard.go): bounded packets,
// whole KRPC messages, known methods, rate limits per host.
//
// No host (an address, or a public /24 or /64: hosts.go) takes more than
// one place in a lookup's closest set, more than its share of the item
// store, or more than its rate of the node's answers.
//
// It never prints, never reads flags or the environment, never exits and
// never contacts an address it was not given: the public routers are used
// only when a caller passes DefaultBootstrap(). Logs go to the
// *slog.Logger in Config (nil is silent), anacrolix's own included.
package dht

import (
	"errors"
	"log/slog"
	"net"
	"time"
)

// DefaultSendRate is the number of queries, and of answers, a node sends
// a second at most when Config.SendRate is zero: two and a half times what
// it takes from one network, so that a flood from one network leaves most
// of its answers to others.
const DefaultSendRate = 250

// DefaultQueryTimeout is how long a node waits for an answer to a query
// when Config.QueryTimeout is zero.
const DefaultQueryTimeout = 2 * time.Second

// DefaultItemLifetime is how long a node keeps a BEP 44 item when
// Config.ItemLifetime is zero: two hours, as other Mainline DHT nodes do.
const DefaultItemLifetime = 2 * time.Hour

// DefaultMaxItems is the number of BEP 44 items a node holds for others
// when Config.MaxItems is zero. An item is at most about 1.2 KB, so this
// bounds the store near 12 MB; a node on a network of millions holds a
// handful, and a private network's bootstrap node one per channel.
const DefaultMaxItems = 10000

// DefaultBootstrap returns the public Mainline DHT routers, as host:port.
// Nothing in this package uses them unless a caller passes them in
// Config.Bootstrap.
func DefaultBootstrap() []string {
	return []string{
		"router.bittorrent.com:6881",
		"dht.transmissionbt.com:6881",
		"router.utorrent.com:6881",
		"dht.libtorrent.org:25401",
	}
}

// Config configures a Node. The zero value is a node on a random UDP port
// that knows nobody, which New refuses unless Bootstrapper is set: pass
// DefaultBootstrap() to join the public DHT.
type Config struct {
	// Listen is the UDP address to serve on; "" means ":0" (every
	// interface, a random port). Ignored when Conn is set.
	Listen string
	// Conn, when set, is the socket to serve on instead of Listen, for
	// example one shared with a torrent client. Node.Close closes it.
	Conn net.PacketConn
	// Bootstrap lists host:port addresses of nodes to join through. Nil
	// means none: the public routers are DefaultBootstrap().
	Bootstrap []string
	// ReadOnly makes a BEP 43 read-only node, for short-lived processes
	// that only read or publish: it answers no queries and other nodes keep
	// it out of their routing tables, so nobody waits on it once it exits.
	ReadOnly bool
	// Bootstrapper makes a bootstrap node (relay node): it pings every node
	// that queries it, so that it can introduce each joiner to the others
	// and a private network of any size forms from its one address.
	// Incompatible with ReadOnly.
	Bootstrapper bool
	// Reachable says that other hosts can reach this node unasked at the
	// address they see it at, even when that address is not one of its
	// own: a forwarded port, or a cloud machine behind one-to-one NAT. A
	// node that finds itself seen at another address otherwise takes it
	// for NAT that lets in only answers, and says it is read-only (BEP 43)
	// so that nobody keeps it in a routing table; Reachable keeps it a
	// full node.
	Reachable bool
	// JoinLater returns the node from New even when no node answered its
	// join, for a client that has another way to the records (pkarr
	// HTTP relays) where UDP is blocked: its lookups try the bootstrap
	// nodes again, and fail with ErrNoNodes while nobody answers.
	JoinLater bool
	// NodesFile, when set, keeps the routing table across runs: New reads
	// it and joins through those nodes as well as Bootstrap, and Close (and
	// a long-running node every few minutes) writes it, atomically. Its
	// directory must exist. A file that does not parse is ignored (and
	// logged).
	NodesFile string
	// SendRate is the most queries per second this node sends, and the
	// most answers per second it sends, each on a budget of its own (so a
	// bootstrap node's pings never take its answers' place); zero means
	// DefaultSendRate. Every node has limiters of its own. Besides, a node
	// takes at most 50 queries a second from one address and 100 from one
	// network, and sends one address at most 32 KiB of answers a second
	// (see guard.go and docs/security.md, "What a DHT node promises").
	SendRate float64
	// QueryTimeout is how long to wait for an answer before giving up on a
	// node; zero means DefaultQueryTimeout. Lookups (resolve, publish,
	// peers, joining) take a node's answer until then but do not wait for
	// it that long: after about a round trip (the mean of the answers so
	// far plus one deviation, 100 to 500 ms) the node's place among the
	// queries in flight goes to the next node, and a lookup ends without
	// the nodes still silent, after the wait TCP would set for a
	// retransmission (RFC 6298: the mean plus four deviations, at least
	// 500 ms, 1 s before any answer) for a lookup before a put or an
	// announce and for a join's, after the shorter one for a resolve. A node that is gone
	// then costs a resolve about a round trip instead of QueryTimeout. A
	// put or an announce that gets no answer is sent again after the
	// longer wait, three times at most.
	QueryTimeout time.Duration
	// ItemLifetime is how long the node keeps a BEP 44 item that another
	// node stored on it, from the last time it was stored (a seeder storing
	// the same packet again starts it anew); zero means
	// DefaultItemLifetime. Shorter is for tests; a network's items live as
	// long as the lifetime of the nodes that hold them.
	ItemLifetime time.Duration
	// MaxItems is the most BEP 44 items the node holds for others; zero
	// means DefaultMaxItems. When it is full, a new item takes the place
	// of the one whose target is farthest from the node's ID, or is
	// refused (KRPC error 202) when it is the farthest itself.
	MaxItems int
	// Logger receives the node's logs, anacrolix's at debug level; nil is
	// silent.
	Logger *slog.Logger
	// Now is the clock used for seq and for peer and item expiry; nil
	// means time.Now. (anacrolix also drops an item ItemLifetime of real
	// time after it was stored.)
	Now func() time.Time
}

// Sentinel errors that callers branch on with errors.Is.
var (
	// ErrNotFound: nodes answered, but none holds a valid packet for the
	// key.
	ErrNotFound = errors.New("nothing published under this key")
	// ErrNoNodes: no DHT node answered (none known, or none reachable).
	ErrNoNodes = errors.New("no DHT node answered")
	// ErrNotStored: no node acknowledged a put or an announce.
	ErrNotStored = errors.New("no node stored it")
	// ErrOutdated: a node refused a packet because it holds one with a
	// higher seq for the key (someone published in the meantime).
	ErrOutdated = errors.New("a node holds a newer packet for this key")
	// ErrClosed: the node has been closed.
	ErrClosed = errors.New("dht node closed")
)
