package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/RoaringBitmap/roaring"
	g "github.com/anacrolix/generics"
	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
	pp "github.com/anacrolix/torrent/peer_protocol"
	"github.com/anacrolix/torrent/storage"
	"golang.org/x/time/rate"

	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
)

// Config configures a Client. The zero value of every field but DataDir is
// a documented default.
type Config struct {
	// DataDir is relay's data folder; bundles are kept in BundlesDir(DataDir).
	// Required.
	DataDir string
	// Listen is the TCP address peers connect to, host:port. Empty means
	// every interface, on the DHT server's port number when DHT is set (so
	// one port number serves both: UDP for the DHT, TCP for BitTorrent),
	// else on a port the system chooses. An IPv4 host listens on IPv4
	// only, an IPv6 host on IPv6 only.
	Listen string
	// DHT is the DHT node bundles are announced on and peers looked up
	// through (a *dht.Node of package dht). Nil means no DHT: peers come
	// only from FetchRequest.Peers, web seeds and peer exchange. The Client
	// never closes it.
	DHT DHT
	// UTP enables uTP (BitTorrent over UDP), on either engine,
	// dialling and accepting, besides TCP, on a UDP port of the same
	// number as Listen's, which must then not be the DHT's. Off by
	// default: TCP is faster and steadier (uTP ran at 1 to 7 MB/s on
	// loopback, where TCP runs at hundreds). With it off, a DHT that
	// takes uTP connections on its own socket (dht.Node.UTP) has them
	// accepted: most clients dial uTP first.
	UTP bool
	// UploadRate and DownloadRate cap the client's transfer of bundle data,
	// in bytes per second, over all bundles and peers. Zero is no cap.
	// Uploads go out at most a quarter second's worth (uploadBurst) at
	// once.
	UploadRate, DownloadRate int64
	// HTTPTransport makes the requests to web seeds; nil means
	// http.DefaultTransport's behaviour.
	HTTPTransport http.RoundTripper
	// Recheck is how often the files of seeded bundles are looked at for
	// changes (size and modification time); changed pieces are hashed
	// again and not served unless they still verify. Zero means every
	// minute; negative, never.
	Recheck time.Duration
	// Logger receives the client's logs and the torrent library's; nil is
	// silent.
	Logger *slog.Logger
	// SeedRequests is how many requests a fetch keeps queued at a peer
	// that has the whole bundle while two or more other peers are
	// fetching it too (see capSeeds), on the torrent library's engine
	// (the wire engine leaves the seed's upload to the seed: see
	// wireswarm.go). Zero means DefaultSeedRequests; negative means no
	// cap beyond the torrent library's own.
	SeedRequests int
	// InitialSeeding, on the wire engine, serves the bundles a Seed gives
	// the client before any fetch of them in initial seeding (BEP 16;
	// see wireseed.go for the policy and why it is not the default). The
	// torrent library's engine ignores it.
	InitialSeeding bool
	// OnRecord, when set, makes the client speak relay_record
	// (RecordExtension) with the peers of its bundles that do: it is
	// called with each packet a peer sends of the key of the bundle they
	// share that is newer than the client's own (ShareRecord) and signed
	// by that key, from one goroutine, never two at once. It must check
	// the rest itself before it acts on the packet or shares it. Nil:
	// the extension is not offered.
	OnRecord func(*record.SignedPacket)
	// RecordKeys, when set, returns the keys besides a bundle's own whose
	// packets relay_record messages in its swarm may carry: a root's
	// release keys and successors (docs/spec/keys.md).
	RecordKeys func(signer.PublicKey) []signer.PublicKey
	// Network, when set, is the network peers are listened for and dialled
	// on instead of the system's TCP: an in-process simulated Internet
	// (internal/simnet) runs hundreds of clients in one process. Nil means
	// TCP.
	Network Network
	// ConnsPerIP bounds the connections a Client accepts from one IP
	// address at a time: those beyond it are closed before their
	// handshake. Zero means DefaultConnsPerIP; negative, no bound.
	ConnsPerIP int
	// Engine is the BitTorrent implementation that moves the bundles.
	// Zero (EngineTorrent) is the torrent library's client; EngineWire,
	// relay's own (experimental, see Engine).
	Engine Engine
}

// Network is a stream network peers are reached on (Config.Network).
type Network interface {
	Listen(ctx context.Context, network, address string) (net.Listener, error)
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// Client serves and fetches bundles. It is safe for concurrent use.
type Client struct {
	cfg   Config
	root  string
	log   *slog.Logger
	cl    *torrent.Client
	store *completion
	port  int          // the TCP port peers reach us on
	tcp   net.Listener // relay's TCP socket (see peerListener)

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	redials   []stalled              // closed by unstall, to dial again (background's own)
	evictions chan *torrent.PeerConn // for evictor to close

	banMu  sync.Mutex
	banned map[netip.Addr]bool // addresses that sent bad data (hashing.go)

	closeOnce sync.Once
	closeErr  error

	addMu    sync.Mutex // serialises adds of bundles
	mu       sync.Mutex
	bundles  map[record.Infohash]*active
	expect   map[record.Infohash]*expectation
	peerBits map[peerKey]*peerPieces
	complete map[record.Infohash]map[torrent.PeerID]bool
	numPcs   map[record.Infohash]int
	dials    dialNotes
	// reqLimits are the queues peers took without rejecting (see stall.go)
	reqLimits map[record.Infohash]map[torrent.PeerID]int
	closed    bool

	seedLookups *rate.Limiter // the DHT lookups of seeded bundles (see seedLookupWait)
	natAsks     *rate.Limiter // the queries of quick asks of seeded bundles behind NAT (see natEager)

	// relay_record (records.go)
	records        map[signer.PublicKey]*record.SignedPacket // the newest shared of each key
	recordPeers    map[recordConn]*recordPeer
	recordIn       chan *record.SignedPacket
	recordWake     chan struct{}
	recordsDropped atomic.Int64
	ltepOnce       sync.Once
	ltep           *torrent.LocalLtepProtocolMap

	// w is the wire engine (Config.Engine); nil on the torrent library's,
	// and then cl is nil.
	w *wireClient
}

// active is a bundle in the client.
type active struct {
	t       *torrent.Torrent
	cancel  context.CancelFunc // stops its announcer and rechecks
	wake    chan struct{}      // tells the announcer a fetch started, or the last seed left
	seeding bool
	fetches int
	// quiet: served as one of a fleet (Serve), see announceShare;
	// fetchedAt: when its last fetch started
	quiet     bool
	fetchedAt time.Time
	semOnce   sync.Once
	sem       chan struct{}    // one Fetch of a bundle at a time
	lastStat  []fileStat       // for rechecks of a seeded bundle
	key       signer.PublicKey // its publisher's key, once known (relay_record)
	share     [2]int           // the last fetch's share of its pieces: number, of (see shares)

	seedSince time.Time // when it was first seeded
	reach     reachBook // its peers and how far they were reached (see Reach)
}

// expectation is what a Fetch expects of a torrent's info before it is
// allowed any storage.
type expectation struct {
	size    int64
	refused chan error
}

// dialRate is how many peers a Client dials a second, at most.
const dialRate = 100

// MaxCompletePeers bounds Stats.CompletePeers, and the memory a bundle's
// count of them takes.
const MaxCompletePeers = 1000

// peerKey names a connection to a peer in a bundle. A connection, not a
// peer ID: a second connection to the same peer, closed as a duplicate,
// must not take what the first learnt with it.
type peerKey struct {
	ih record.Infohash
	pc *torrent.PeerConn
}

// keyOf names pc in its bundle; ok is false while pc has no torrent yet.
func keyOf(pc *torrent.PeerConn) (k peerKey, ok bool) {
	t := pc.Torrent()
	if t == nil {
		return peerKey{}, false
	}
	return peerKey{record.Infohash(t.InfoHash()), pc}, true
}

// peerPieces is what a peer said it has, on one connection. A set of piece numbers, not a
// slice indexed by them: a peer may claim pieces far beyond the bundle's
// (before the info is known, nothing bounds them), and the memory kept
// must follow what it sent, not the numbers it named.
type peerPieces struct {
	have roaring.Bitmap
	all  bool

	seed  bool      // it has every piece
	limit int       // its own request limit while capSeeds caps it, else 0
	got   int64     // bytes of blocks it sent since since, while capped
	since time.Time // start of the window got counts
	queue int       // the most requests capSeeds and onBlock allowed it

	choked     bool       // it chokes us (see stall.go)
	unchoked   time.Time  // when it last unchoked us
	lastBlock  time.Time  // when it last sent a block
	told       bool       // it said what it has (have, bitfield...)
	added      time.Time  // when the connection joined the bundle
	ip         netip.Addr // the peer's address
	interested bool       // it is interested in what we have
	lastReject time.Time  // when it last rejected a request
	queued     int        // requests sent to it and not answered (nor cancelled)
	peak       int        // the most queued since its last burst of rejects
	took       int        // of those, how many it took before that burst
}

// NewClient starts a client listening for peers. Close it when done.
func NewClient(cfg Config) (*Client, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("transfer: no data folder")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{
		cfg: cfg, root: BundlesDir(cfg.DataDir), log: log,
		store:     newCompletion(log),
		bundles:   make(map[record.Infohash]*active),
		expect:    make(map[record.Infohash]*expectation),
		peerBits:  make(map[peerKey]*peerPieces),
		complete:  make(map[record.Infohash]map[torrent.PeerID]bool),
		numPcs:    make(map[record.Infohash]int),
		reqLimits: make(map[record.Infohash]map[torrent.PeerID]int),
		evictions: make(chan *torrent.PeerConn, 256),

		seedLookups: rate.NewLimiter(seedLookupRate, seedLookupBurst),
		natAsks:     rate.NewLimiter(natQueryRate, natQueryRate),

		records:     make(map[signer.PublicKey]*record.SignedPacket),
		recordPeers: make(map[recordConn]*recordPeer),
		recordIn:    make(chan *record.SignedPacket, recordQueue),
		recordWake:  make(chan struct{}, 1),
	}
	if err := os.MkdirAll(c.root, 0o700); err != nil {
		return nil, fmt.Errorf("transfer: %w", err)
	}
	host, port, err := c.listenAddr()
	if err != nil {
		return nil, err
	}
	perIP := cfg.ConnsPerIP
	if perIP == 0 {
		perIP = DefaultConnsPerIP
	}
	c.tcp, err = listenTCP(cfg.Network, host, port)
	if err != nil {
		return nil, fmt.Errorf("transfer: failed to listen for peers: %w", err)
	}
	port = c.tcp.Addr().(*net.TCPAddr).Port
	if cfg.Engine == EngineWire {
		c.port = port
		c.ctx, c.cancel = context.WithCancel(context.Background())
		if c.w, err = newWireClient(c, host, max(0, perIP)); err != nil {
			c.cancel()
			c.tcp.Close()
			return nil, fmt.Errorf("transfer: %w", err)
		}
		return c, nil
	}

	tc := torrent.NewDefaultClientConfig()
	tc.DataDir = c.root
	tc.DefaultStorage = &storageImpl{c: c, file: storage.NewFileOpts(storage.NewFileClientOpts{
		ClientBaseDir: c.root,
		TorrentDirMaker: func(base string, _ *metainfo.Info, ih metainfo.Hash) string {
			return filepath.Join(base, ih.HexString())
		},
		PieceCompletion: c.store,
		UsePartFiles:    g.Some(false),
		Logger:          log,
	})}
	tc.ListenHost = func(string) string { return host }
	tc.ListenPort = port // uTP's, when on
	tc.DisableTCP = true // relay's own tcpListener
	if ip, err := netip.ParseAddr(host); err == nil {
		tc.DisableIPv6 = ip.Unmap().Is4()
		tc.DisableIPv4 = !ip.Unmap().Is4()
	}
	tc.NoDHT = true
	tc.PeriodicallyAnnounceTorrentsToDht = false // the Client announces, with its TCP port
	tc.DisableTrackers = true
	tc.NoDefaultPortForwarding = true
	tc.DisableWebtorrent = true
	tc.DisableUTP = !cfg.UTP
	tc.Seed = true
	tc.Bep20 = peerIDPrefix
	// Keep connections between peers that both hold the whole bundle: a
	// peer that drops them at once may never send its last "have"
	// messages, and a publisher waiting for complete peers would not count
	// it.
	tc.DropMutuallyCompletePeers = false
	// One connection per peer: two peers that dial each other at once,
	// or one reached at two addresses, would otherwise keep both, and
	// split their requests and double their messages between them.
	tc.DropDuplicatePeerIds = true
	// The library dials 10 peers a second, in an order of its own (BEP
	// 40), whatever order the DHT gave them in; a DHT answer holds up to
	// 100 peers, many of them fetches that have exited, so a fetch could
	// reach the one seeder among them only after seconds. 100 a second,
	// still within the 25 half-open connections per bundle.
	tc.DialRateLimiter = rate.NewLimiter(dialRate, dialRate)
	// The torrent library's connection writer can miss a wake-up: it
	// takes the signal it waits for (writeCond.Signaled in
	// peer-conn-msg-writer.go) only after its last look at what to send
	// has unlocked the client, so a wake-up in between (the retry timer
	// of a rate-limited upload, PeerConn.setRetryUploadTimer; a new
	// request to send) is lost, and the writer sleeps until its
	// keep-alive timer. With the default minute, a fetch from a seeder
	// with an UploadRate could stall that long, or to its end. A second
	// bounds each stall, for a 4-byte keep-alive as often on a connection
	// idle but still of use. Not less: libtorrent's uTP starts its
	// retransmission timeout (at least 500 ms) again at every packet that
	// arrives, and besides one fast resend it sends a lost packet again
	// only when that timeout expires. With a keep-alive every quarter
	// second it never did: a request lost twice on its way to this seeder
	// was never sent again, and libtorrent waited for its blocks while
	// the seeder sat idle (interop TestLibtorrentFetchesFromRelay, where
	// a loaded machine drops UDP datagrams on loopback).
	tc.KeepAliveTimeout = time.Second
	tc.Slogger = log
	tc.WebTransport = cfg.HTTPTransport
	if cfg.UploadRate > 0 {
		tc.UploadRateLimiter = rate.NewLimiter(rate.Limit(cfg.UploadRate), uploadBurst(cfg.UploadRate))
	}
	if cfg.DownloadRate > 0 {
		tc.DownloadRateLimiter = rate.NewLimiter(rate.Limit(cfg.DownloadRate), 0)
	}
	tc.Callbacks.ReadMessage = c.onMessage
	tc.Callbacks.ReadExtendedHandshake = func(pc *torrent.PeerConn, m *pp.ExtendedHandshakeMessage) {
		c.onExtendedHandshake(pc, m)
		c.onRecordHandshake(pc, m)
	}
	tc.Callbacks.PeerConnReadExtensionMessage = append(tc.Callbacks.PeerConnReadExtensionMessage, c.onRecordMessage)
	tc.Callbacks.PeerConnClosed = c.onPeerClosed
	tc.Callbacks.ReceivedUsefulData = append(tc.Callbacks.ReceivedUsefulData, c.onUsefulData)
	tc.IPBlocklist = blocklist{c}
	tc.Callbacks.SentRequest = append(tc.Callbacks.SentRequest, c.onSentRequest)
	tc.Callbacks.PeerConnAdded = append(tc.Callbacks.PeerConnAdded, c.onConnAdded, c.onConnReached, c.recordProtocols)
	tc.EstablishedConnsPerTorrent = bundleConns
	// The Client dials through its own dialers, which note each dial
	// (noteDials), to say later which peers it could not reach and why.
	tc.DialForPeerConns = false

	cl, err := torrent.NewClient(tc)
	if err != nil {
		c.tcp.Close()
		return nil, fmt.Errorf("transfer: failed to start the torrent client: %w", err)
	}
	c.cl = cl
	c.port = port
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.noteDials() // the library's own sockets (uTP, with cfg.UTP)
	cl.AddDialer(notingDialer{Dialer: tcpDialer(cfg.Network), c: c})
	cl.AddListener(newPeerListener(c.tcp, max(0, perIP), c.ctx.Done()))
	// uTP (BEP 29) on the DHT node's socket, from peers that dial it:
	// most clients try uTP first (webtorrent took TCP only after 22 s of
	// uTP attempts). relay dials TCP only: steadier, faster.
	if d, ok := cfg.DHT.(utpNode); ok && cfg.DHT != nil && !cfg.UTP {
		if l := d.UTP(); l != nil {
			cl.AddListener(newPeerListener(l, max(0, perIP), c.ctx.Done()))
		}
	}
	if d, ok := cfg.DHT.(dhtServerer); ok && cfg.DHT != nil {
		if s := d.Server(); s != nil {
			cl.AddDhtServer(torrent.AnacrolixDhtServerWrapper{Server: s})
		}
	}
	c.wg.Add(2)
	go c.background()
	go c.evictor()
	c.wg.Go(func() { c.recordLoop(c.ctx) })
	return c, nil
}

// uploadBurst is the most an upload capped at rate bytes a second sends at
// once: a quarter second of it, and no less than 128 KiB, the longest
// request BitTorrent clients send (the torrent library rejects a request
// longer than the burst). Left at zero, the library's burst was 1 MiB, and
// every pause of a connection's writer (up to a keep-alive interval, see
// KeepAliveTimeout above) let that much go out at once: at 1 MiB/s, twice
// the cap within a second, and a fetch sharing the seed took it all and
// measured the seed's delivery at twice its rate (TestSeedCappedInSwarm
// allowed it 26-29 requests, in 3 of 30 runs at load 16).
func uploadBurst(rate int64) int {
	return int(max(128<<10, rate/4))
}

// listenAddr resolves Config.Listen.
func (c *Client) listenAddr() (string, int, error) {
	l := c.cfg.Listen
	if l == "" {
		if d, ok := c.cfg.DHT.(dhtAddrer); ok && c.cfg.DHT != nil {
			ap := d.Addr()
			host := ""
			if ap.Addr().IsValid() && !ap.Addr().IsUnspecified() {
				host = ap.Addr().Unmap().String()
			}
			return host, int(ap.Port()), nil
		}
		return "", 0, nil
	}
	host, ps, err := net.SplitHostPort(l)
	if err != nil {
		return "", 0, fmt.Errorf("transfer: listen address %q: %w", l, err)
	}
	port, err := strconv.ParseUint(ps, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("transfer: listen address %q: bad port", l)
	}
	return host, int(port), nil
}

// Addr returns the address peers can reach this client on: its listening
// IP (127.0.0.1 when it listens on every interface) and TCP port.
func (c *Client) Addr() netip.AddrPort {
	addrs := []net.Addr{c.tcp.Addr()}
	if c.w == nil {
		addrs = c.cl.ListenAddrs()
	}
	for _, a := range addrs {
		if ta, ok := a.(*net.TCPAddr); ok {
			ap := ta.AddrPort()
			if ap.Addr().IsUnspecified() {
				if ap.Addr().Is4() {
					return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), ap.Port())
				}
				return netip.AddrPortFrom(netip.IPv6Loopback(), ap.Port())
			}
			return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		}
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(c.port))
}

// Close stops every transfer, saves what was verified and closes the
// connections. It does not close Config.DHT. It waits for the client's
// goroutines to end; a second call waits for the first to finish.
func (c *Client) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.close() })
	return c.closeErr
}

func (c *Client) close() error {
	if c.w != nil {
		return c.w.close()
	}
	c.mu.Lock()
	c.closed = true
	for _, a := range c.bundles {
		a.cancel()
	}
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	errs := c.cl.Close() // drops every torrent, which saves its state
	<-c.cl.Closed()
	// Closed after the torrent client, whose accept loop, once the
	// client is closed, ends at the listener's error.
	errs = append(errs, c.tcp.Close())
	return errors.Join(errs...)
}

// background saves changed bundle states every two seconds, rechecks
// seeded bundles' files, restarts stalled connections (unstall) and
// closes idle ones where room is short (sweep).
func (c *Client) background() {
	defer c.wg.Done()
	save := time.NewTicker(2 * time.Second)
	defer save.Stop()
	stall := time.NewTicker(stallTime / 4)
	defer stall.Stop()
	every := c.cfg.Recheck
	if every == 0 {
		every = time.Minute
	}
	var recheck <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		recheck = t.C
	}
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-save.C:
			c.store.saveAll()
		case <-recheck:
			c.recheck(c.ctx)
		case <-stall.C:
			c.unstall()
			c.sweep()
		}
	}
}

// storageImpl is the file storage, wrapped so that relay checks each
// torrent's info before anything is written and keeps its verification
// state.
type storageImpl struct {
	c    *Client
	file storage.ClientImplCloser
}

func (s *storageImpl) OpenTorrent(ctx context.Context, info *metainfo.Info, mih metainfo.Hash) (storage.TorrentImpl, error) {
	ih := record.Infohash(mih)
	err := checkInfo(info)
	if err == nil {
		err = s.c.checkExpected(ih, info)
	}
	if err != nil {
		s.c.refuse(ih, err)
		return storage.TorrentImpl{}, err
	}
	dir := filepath.Join(s.c.root, ih.String())
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return storage.TorrentImpl{}, err
	}
	if err := s.c.store.open(dir, ih, info); err != nil {
		return storage.TorrentImpl{}, err
	}
	ti, err := s.file.OpenTorrent(ctx, info, mih)
	if err != nil {
		s.c.store.close(ih)
		return ti, err
	}
	s.c.mu.Lock()
	s.c.numPcs[ih] = info.NumPieces()
	s.c.mu.Unlock()
	w := newWriteBehind(func(err error) {
		s.c.refuse(ih, fmt.Errorf("failed to write the bundle: %w", err))
	})
	pieceFn := ti.Piece
	w.check, err = newPieceCheck(info, func(i int) io.ReaderAt { return pieceFn(info.Piece(i)) }, s.c.banIP)
	if err != nil {
		ti.Close()
		s.c.store.close(ih)
		return storage.TorrentImpl{}, err
	}
	s.c.store.setCheck(ih, w.check)
	ti.Piece = func(p metainfo.Piece) storage.PieceImpl {
		return behindPiece{PieceImpl: pieceFn(p), w: w, index: p.Index(), length: p.Length()}
	}
	closeFn := ti.Close
	ti.Close = func() error {
		w.close()
		err := closeFn()
		if serr := s.c.store.close(ih); serr != nil {
			s.c.log.Warn("failed to save bundle state", "infohash", ih, "err", serr)
		}
		return err
	}
	return ti, nil
}

// checkExpected checks a torrent's info against the record a Fetch holds.
func (c *Client) checkExpected(ih record.Infohash, info *metainfo.Info) error {
	c.mu.Lock()
	e := c.expect[ih]
	c.mu.Unlock()
	if e != nil && info.TotalLength() != e.size {
		return fmt.Errorf("%w: torrent is %d bytes, the record says %d", record.ErrManifestMismatch, info.TotalLength(), e.size)
	}
	return nil
}

func (c *Client) refuse(ih record.Infohash, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.expect[ih]; e != nil {
		select {
		case e.refused <- err:
		default:
		}
	}
}

// add adds a bundle to the torrent client, or returns the one there.
// infoBytes may be nil when the info is to come from peers or web seeds.
//
// Lock order: c.mu is never held while calling into the torrent client,
// whose callbacks (run under its own lock) take c.mu.
func (c *Client) add(ih record.Infohash, infoBytes []byte) (*active, error) {
	c.addMu.Lock()
	defer c.addMu.Unlock()
	c.mu.Lock()
	closed, a := c.closed, c.bundles[ih]
	c.mu.Unlock()
	if closed {
		return nil, errClosed
	}
	if a != nil {
		if infoBytes != nil && a.t.Info() == nil {
			if err := a.t.SetInfoBytes(infoBytes); err != nil {
				return nil, fmt.Errorf("bundle %s: %w", ih, err)
			}
		}
		return a, nil
	}
	t, _ := c.cl.AddTorrentOpt(torrent.AddTorrentOpts{InfoHash: metainfo.Hash(ih), InfoBytes: infoBytes})
	if infoBytes != nil && t.Info() == nil {
		t.Drop()
		return nil, fmt.Errorf("bundle %s: the torrent client refused its info", ih)
	}
	// A chunk that cannot be written (a full disk) stops the download
	// and ends the fetch with the error, instead of leaving it waiting.
	t.SetOnWriteChunkError(func(err error) {
		t.DisallowDataDownload()
		c.refuse(ih, fmt.Errorf("failed to write the bundle: %w", err))
	})
	ctx, cancel := context.WithCancel(c.ctx)
	a = &active{t: t, cancel: cancel, wake: make(chan struct{}, 1)}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		cancel()
		t.Drop()
		return nil, errClosed
	}
	c.bundles[ih] = a
	if c.cfg.DHT != nil {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.announce(ctx, ih, torrentSwarm{c, ih, a})
		}()
	}
	c.mu.Unlock()
	return a, nil
}

var errClosed = errors.New("transfer: client closed")

// drop removes a bundle from the torrent client when nothing uses it. It
// holds addMu until the torrent is dropped: an add of the same bundle in
// between would get back the torrent being dropped, and wait on it for
// ever (a fetch right after a refused one of the same bundle did, with no
// peer known, on a loaded machine).
func (c *Client) drop(ih record.Infohash, a *active) {
	c.addMu.Lock()
	defer c.addMu.Unlock()
	c.mu.Lock()
	if a.seeding || a.fetches > 0 || c.bundles[ih] != a {
		c.mu.Unlock()
		return
	}
	delete(c.bundles, ih)
	delete(c.numPcs, ih)
	delete(c.complete, ih)
	delete(c.reqLimits, ih)
	c.mu.Unlock()
	a.cancel()
	a.t.Drop()
}

// Drop stops serving a bundle; its files stay on disk.
func (c *Client) Drop(ih record.Infohash) {
	if c.w != nil {
		c.w.dropSeed(ih)
		return
	}
	c.mu.Lock()
	a := c.bundles[ih]
	if a != nil {
		a.seeding = false
	}
	c.mu.Unlock()
	if a != nil {
		c.drop(ih, a)
	}
}

// Stats describes a bundle in a client.
type Stats struct {
	// Size is the bundle's size, once its info is known; Have is how many
	// of its bytes are here and verified.
	Size, Have int64
	// Peers is the number of peers connected now.
	Peers int
	// CompletePeers is the number of distinct peers (by peer ID) seen
	// holding the whole bundle since it was added to this client, whether
	// or not they are still connected, counted up to MaxCompletePeers (a
	// seeder serves many thousands over months).
	CompletePeers int
	// Uploaded and Downloaded count bundle data sent to and received from
	// peers and web seeds since the bundle was added.
	Uploaded, Downloaded int64
	// Hashed counts the bytes hashed to verify pieces since the bundle was
	// added.
	Hashed int64
}

// Stats returns the statistics of a bundle; ok is false when the client
// does not hold it.
func (c *Client) Stats(ih record.Infohash) (s Stats, ok bool) {
	if c.w != nil {
		return c.w.stats(ih)
	}
	c.mu.Lock()
	a := c.bundles[ih]
	s.CompletePeers = len(c.complete[ih])
	c.mu.Unlock()
	if a == nil {
		return Stats{}, false
	}
	st := a.t.Stats()
	s.Peers = st.ActivePeers
	s.Uploaded = st.BytesWrittenData.Int64()
	s.Downloaded = st.BytesReadData.Int64()
	s.Hashed = st.BytesHashed.Int64()
	if info := a.t.Info(); info != nil {
		s.Size = info.TotalLength()
		for i := 0; i < a.t.NumPieces(); i++ {
			if a.t.PieceState(i).Complete {
				s.Have += a.t.Piece(i).Info().Length()
			}
		}
	}
	return s, true
}

// onMessage follows what each peer has, to count the peers holding a
// whole bundle. It runs with the torrent client locked: it must not call
// back into it.
func (c *Client) onMessage(pc *torrent.PeerConn, msg *pp.Message) {
	switch msg.Type {
	case pp.Piece:
		c.onBlock(pc, len(msg.Piece))
		return
	case pp.Choke, pp.Unchoke, pp.Reject:
		c.onFlow(pc, msg)
		return
	case pp.Interested, pp.NotInterested:
		c.withPeer(pc, func(_ peerKey, p *peerPieces) { p.onInterest(msg.Type) })
		return
	case pp.Have, pp.HaveAll, pp.HaveNone, pp.Bitfield:
	default:
		return
	}
	c.withPeer(pc, func(k peerKey, p *peerPieces) { c.onPieces(k, p, pc, msg) })
}

// onPieces follows what a peer said it has; c.mu is held.
func (c *Client) onPieces(k peerKey, p *peerPieces, pc *torrent.PeerConn, msg *pp.Message) {
	n, known := c.numPcs[k.ih]
	if !p.told {
		// A fetcher counts for capSeeds from now on: it may be the
		// second that makes the cap apply.
		p.told = true
		defer c.capSeeds(k.ih)
	}
	switch msg.Type {
	case pp.HaveAll:
		p.all = true
	case pp.HaveNone:
		p.all = false
		p.have.Clear()
	case pp.Have:
		if known && int(msg.Index) >= n {
			return // the torrent library drops the peer for it
		}
		p.have.Add(uint32(msg.Index))
	case pp.Bitfield:
		bits := msg.Bitfield
		if known && len(bits) > n {
			bits = bits[:n]
		}
		p.have.Clear()
		for i, h := range bits {
			if h {
				p.have.Add(uint32(i))
			}
		}
	}
	if p.all || known && n > 0 && p.have.Rank(uint32(n-1)) == uint64(n) {
		m := c.complete[k.ih]
		if m == nil {
			m = make(map[torrent.PeerID]bool)
			c.complete[k.ih] = m
		}
		if len(m) < MaxCompletePeers {
			m[pc.PeerID] = true
		}
		if !p.seed {
			p.seed = true
			defer c.capSeeds(k.ih)
		}
	}
}

func (c *Client) onPeerClosed(pc *torrent.PeerConn) {
	c.forgetRecordPeer(torrentRecordConn{pc})
	k, ok := keyOf(pc)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	wasSeed := c.peerBits[k] != nil && c.peerBits[k].seed
	delete(c.peerBits, k)
	c.capSeeds(k.ih)
	if a := c.bundles[k.ih]; wasSeed && a != nil && a.seeding {
		// The last seed gone, a seeder behind NAT may have become the
		// only source: its announcer looks at natEager again.
		for k2, p := range c.peerBits {
			if k2.ih == k.ih && p.seed {
				return
			}
		}
		select {
		case a.wake <- struct{}{}:
		default:
		}
	}
}
