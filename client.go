package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/relay-sh/relay/dht"
	"github.com/relay-sh/relay/httprelay"
	"github.com/relay-sh/relay/internal/lockfile"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/transfer"
)

// Config configures a Client. DataDir is required; every other zero value
// is a documented default.
type Config struct {
	// DataDir holds bundles, state and the DHT routing table.
	DataDir string
	// Bootstrap lists host:port DHT nodes to join through; nil means the
	// public Mainline routers (dht.DefaultBootstrap).
	Bootstrap []string
	// Listen is the address for the DHT (UDP) and BitTorrent (TCP); ""
	// means every interface, a random port.
	Listen string
	// ReadOnly runs the DHT node read-only (BEP 43), for short-lived
	// processes: others never wait on it after it exits.
	ReadOnly bool
	// Reachable says this machine accepts DHT queries and peers unasked
	// at the address others see it at, even when that address is not its
	// own (a forwarded port, a cloud machine's one-to-one NAT): see
	// dht.Config.Reachable.
	Reachable bool
	// Logger receives logs; nil is silent.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// MaxFuture is how far ahead of Now a record's seq may be; zero means
	// record.DefaultMaxFuture.
	MaxFuture time.Duration
	// UTP enables uTP besides TCP for BitTorrent; UploadRate and
	// DownloadRate cap bundle data in bytes per second (zero: no cap).
	UTP                      bool
	UploadRate, DownloadRate int64
	// Network is an already running DHT node to use instead of starting
	// one (tests and the demo share one process); Close leaves it open.
	Network *dht.Node
	// PeerNetwork, when set, is the network BitTorrent peers are listened
	// for and dialled on instead of the system's TCP
	// (transfer.Config.Network): with Network, a node on the same
	// network, whole clients run on an in-process simulated Internet
	// (internal/simnet). Nil means TCP.
	PeerNetwork transfer.Network

	// Relays are pkarr HTTP relays' base URLs (httprelay.ClientConfig):
	// records are read from the DHT and from them at once, the highest
	// valid seq winning, and stored through both. With relays, a client
	// starts even when no DHT node answers (UDP blocked). RelayTimeout
	// bounds each request to a relay; zero means
	// httprelay.DefaultTimeout.
	Relays       []string
	RelayTimeout time.Duration
	// HTTPTransport makes every HTTP request the client makes: to the
	// relays and to web seeds. Nil means http.DefaultTransport's
	// behaviour, which takes its proxy from HTTPS_PROXY, HTTP_PROXY and
	// NO_PROXY (http.ProxyFromEnvironment).
	HTTPTransport http.RoundTripper
	// Engine is the BitTorrent implementation bundles move with
	// (transfer.Config.Engine); zero is the torrent library's client.
	Engine transfer.Engine
	// InitialSeeding is transfer.Config.InitialSeeding: on the wire
	// engine, the bundles this client seeds first (a publisher's) are
	// served in initial seeding.
	InitialSeeding bool
}

// Client is a relay participant: a DHT node, and the state and bundles of
// a data folder.
type Client struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	node    *dht.Node
	ownNode bool
	relays  *httprelay.Client // nil without Config.Relays
	states  stateStore

	tcMu sync.Mutex
	tc   *transfer.Client

	pushes pushes // the newest packet of each key, and who waits for it (push.go)

	swarmKeys swarmKeys // chainKeys' answers, kept a moment (chain.go)

	lockMu sync.Mutex
	lock   *lockfile.Lock
}

// ErrDataDirInUse is returned when another process uses the data folder.
var ErrDataDirInUse = errors.New("the data folder is in use by another process")

// lockData takes the data folder for this client, once: a client that
// fetches, seeds or keeps a routing table writes there, and two processes
// writing one folder would corrupt each other's bundle and routing state.
// A read-only client that only resolves takes nothing, so it can run
// beside a seeder on the same folder. Close releases the lock; so does the
// system when the process dies.
func (c *Client) lockData() error {
	c.lockMu.Lock()
	defer c.lockMu.Unlock()
	if c.lock != nil {
		return nil
	}
	l, err := lockfile.Acquire(filepath.Join(c.cfg.DataDir, "lock"))
	if errors.Is(err, lockfile.ErrLocked) {
		return fmt.Errorf("%w: %w", ErrDataDirInUse, err)
	}
	if err != nil {
		return fmt.Errorf("data folder: %w", err)
	}
	c.lock = l
	return nil
}

// privateDir makes the data folder dir private to its owner: made with
// mode 0700 if it is not there, tightened to it (and logged) if group or
// others may enter or read it, as relay's data folders were before. What
// it holds (which keys this machine follows, what it accepted, its lock
// and routing table) is nobody else's business; relay makes everything in
// it 0700 or 0600 too.
func privateDir(dir string, log *slog.Logger) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if runtime.GOOS == "windows" || fi.Mode().Perm()&0o077 == 0 {
		return nil
	}
	perm := fi.Mode().Perm() &^ 0o077
	if err := os.Chmod(dir, perm); err != nil {
		return fmt.Errorf("cannot make %s private to its owner: %w", dir, err)
	}
	log.Info("made the data folder private to its owner", "dir", dir, "was", fmt.Sprintf("%04o", fi.Mode().Perm()), "now", fmt.Sprintf("%04o", perm))
	return nil
}

// Open starts a client: it checks the data folder and joins the DHT.
func Open(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("no data folder")
	}
	c := &Client{cfg: cfg, log: cfg.Logger, now: cfg.Now, states: newStateStore(cfg.DataDir)}
	c.pushes.init()
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if err := privateDir(cfg.DataDir, c.log); err != nil {
		return nil, fmt.Errorf("data folder: %w", err)
	}
	if c.now == nil {
		c.now = time.Now
	}
	var err error
	if c.relays, err = relayClient(cfg); err != nil {
		return nil, err
	}
	if !cfg.ReadOnly {
		if err := c.lockData(); err != nil {
			return nil, err
		}
	}
	c.node = cfg.Network
	if c.node == nil {
		bootstrap := cfg.Bootstrap
		if bootstrap == nil {
			bootstrap = dht.DefaultBootstrap()
		}
		nodesFile := ""
		if !cfg.ReadOnly {
			nodesFile = filepath.Join(cfg.DataDir, "dht-nodes")
		}
		n, err := dht.New(ctx, dht.Config{
			Listen:    cfg.Listen,
			Bootstrap: bootstrap,
			ReadOnly:  cfg.ReadOnly,
			Reachable: cfg.Reachable,
			NodesFile: nodesFile,
			JoinLater: c.relays != nil,
			Logger:    cfg.Logger,
			Now:       cfg.Now,
		})
		if err != nil {
			c.releaseData()
			return nil, err
		}
		c.node, c.ownNode = n, true
	}
	return c, nil
}

// Close stops the client: its torrent client, and its DHT node unless it
// was given one.
func (c *Client) Close() error {
	var errs []error
	c.tcMu.Lock()
	if c.tc != nil {
		errs = append(errs, c.tc.Close())
		c.tc = nil
	}
	c.tcMu.Unlock()
	if c.ownNode {
		errs = append(errs, c.node.Close())
	}
	errs = append(errs, c.releaseData())
	return errors.Join(errs...)
}

// releaseData releases the data folder's lock, if held.
func (c *Client) releaseData() error {
	c.lockMu.Lock()
	defer c.lockMu.Unlock()
	err := c.lock.Release()
	c.lock = nil
	return err
}

// startedTransfer returns the torrent client if transfer started it, nil
// if not: for what only concerns a running one.
func (c *Client) startedTransfer() *transfer.Client {
	c.tcMu.Lock()
	defer c.tcMu.Unlock()
	return c.tc
}

// transfer returns the client's torrent client, starting it on first use:
// it listens for peers on TCP at the DHT node's port number (so one port
// number serves both; another when the system chose the number and it is
// taken for TCP) and announces and finds peers through the node.
func (c *Client) transfer() (*transfer.Client, error) {
	c.tcMu.Lock()
	defer c.tcMu.Unlock()
	if c.tc != nil {
		return c.tc, nil
	}
	if err := c.lockData(); err != nil {
		return nil, err
	}
	listen := ""
	if a := c.node.Addr(); c.ownNode && !a.Addr().IsUnspecified() {
		listen = a.String()
	} else if c.ownNode {
		// Every interface, at the DHT node's port number.
		listen = ""
	} else if host, _, err := net.SplitHostPort(c.cfg.Listen); err == nil {
		// A shared node's port is taken by whoever else uses it: listen
		// on the same host, a port of our own.
		listen = net.JoinHostPort(host, "0")
	}
	tcfg := transfer.Config{
		DataDir:       c.cfg.DataDir,
		Listen:        listen,
		DHT:           c.node,
		UTP:           c.cfg.UTP,
		UploadRate:    c.cfg.UploadRate,
		DownloadRate:  c.cfg.DownloadRate,
		HTTPTransport: c.cfg.HTTPTransport,
		Logger:        c.cfg.Logger,
		OnRecord:      c.onRecord,
		RecordKeys:    c.chainKeys,
		Network:       c.cfg.PeerNetwork,
		Engine:        c.cfg.Engine,

		InitialSeeding: c.cfg.InitialSeeding,
	}
	tc, err := transfer.NewClient(tcfg)
	if err != nil && c.ownNode && systemPort(c.cfg.Listen) && errors.Is(err, syscall.EADDRINUSE) {
		// The system chose the DHT node's UDP port, and that number is
		// taken for TCP on this host: any other port serves, as bundles
		// are announced with the TCP port.
		host, _, _ := net.SplitHostPort(listen)
		tcfg.Listen = net.JoinHostPort(host, "0")
		tc, err = transfer.NewClient(tcfg)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to start the torrent client: %w", err)
	}
	c.tc = tc
	c.shareKnown(tc)
	return tc, nil
}

// systemPort reports whether listen (Config.Listen) leaves the port to the
// system.
func systemPort(listen string) bool {
	_, port, err := net.SplitHostPort(listen)
	return listen == "" || err == nil && (port == "" || port == "0")
}

// PeerAddr returns the address peers reach this client's torrent client
// at, starting it if needed.
func (c *Client) PeerAddr() (netip.AddrPort, error) {
	tc, err := c.transfer()
	if err != nil {
		return netip.AddrPort{}, err
	}
	return tc.Addr(), nil
}

// Node returns the client's DHT node.
func (c *Client) Node() *dht.Node { return c.node }

// Resolved is a channel's current release as found in the DHT.
type Resolved struct {
	Packet  *record.SignedPacket
	Release record.Release
	// Root, Delegation and Signers are as in FetchResult.
	Root       *record.SignedPacket
	Delegation *record.Delegation
	Signers    []signer.PublicKey
	Stats      dht.ResolveStats
	// Relays says what the HTTP relays answered (Config.Relays).
	Relays httprelay.GetStats
	// Stale is set when the record is past its expiry.
	Stale bool
}

// Resolve finds the packet of key with the highest valid seq and reads the
// channel's release record from it, following the key's roots and
// delegation (docs/spec/keys.md) from where this data folder last was. It
// checks the signatures, records and threshold, not this machine's state
// nor expiry: Fetch does that.
func (c *Client) Resolve(ctx context.Context, key signer.PublicKey, channel string) (*Resolved, error) {
	if err := record.ValidChannel(channel); err != nil {
		return nil, err
	}
	// Any seq and expiry: this says what the network holds now.
	pol := record.Policy{Now: c.now(), MaxFuture: 100 * 365 * 24 * time.Hour, AllowExpired: true}
	chk, err := c.checkRelease(ctx, key, channel, record.Accepted{}, pol, false, false)
	if err != nil {
		return nil, err
	}
	r := chk.Release
	return &Resolved{Packet: chk.Packet, Root: chk.Root, Delegation: chk.Delegation, Signers: chk.Signers,
		Release: r, Stats: chk.Stats, Relays: chk.Relays, Stale: !c.now().Before(r.Expires)}, nil
}

// State returns what this data folder last accepted for key and channel.
func (c *Client) State(key signer.PublicKey, channel string) (State, error) {
	return c.states.Load(key, channel)
}

// channelName returns channel, or transfer.DefaultChannel ("stable") when
// it is empty.
func channelName(channel string) string {
	if channel == "" {
		return transfer.DefaultChannel
	}
	return channel
}

// checkedChannel is channelName, checked (record.ValidChannel).
func checkedChannel(channel string) (string, error) {
	channel = channelName(channel)
	return channel, record.ValidChannel(channel)
}
