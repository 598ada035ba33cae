package transfer

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/torrent/metainfo"
	"golang.org/x/time/rate"

	"github.com/relay-sh/relay/internal/peerwire"
	"github.com/relay-sh/relay/record"
)

// Engine is the BitTorrent implementation a Client moves bundles with
// (Config.Engine).
type Engine int

const (
	// EngineTorrent is the torrent library's client
	// (github.com/anacrolix/torrent), the default.
	EngineTorrent Engine = iota
	// EngineWire is relay's own BitTorrent peer (internal/peerwire). It
	// is experimental: it fetches, seeds and serves bundles with the same
	// checks, state files and errors, speaks relay_record, serves a
	// fleet's bundles quietly (Serve) and says what it reached (Reach),
	// takes uTP as the default engine does (wireutp.go), but has no
	// Recheck or closing of idle connections to make room yet, its uTP
	// dials do not reach libtorrent, and by design it has no capSeeds or
	// shares (a seed's upload is bounded at the seed: see wireswarm.go);
	// DownloadRate paces the pieces a fetch takes in, while those in
	// flight (64 MiB) may come faster.
	EngineWire
)

// ParseEngine returns the engine named s: "torrent" (or "") or "wire".
func ParseEngine(s string) (Engine, error) {
	switch s {
	case "", "torrent":
		return EngineTorrent, nil
	case "wire":
		return EngineWire, nil
	}
	return 0, fmt.Errorf("unknown engine %q (torrent or wire)", s)
}

func (e Engine) String() string {
	switch e {
	case EngineTorrent:
		return "torrent"
	case EngineWire:
		return "wire"
	}
	return fmt.Sprintf("engine(%d)", int(e))
}

// wireClient is a Client's wire engine: a peerwire.Client accepts peers
// on the Client's TCP socket (within Config.ConnsPerIP) and dials them
// through Config.Network, and holds one wireBundle for each bundle in
// bundles. The parts of the Client that are the same on either engine
// (its Config, data folder, log, port, the DHT's rate limits and the
// announce loop of dht.go) stay on the Client, which wireClient points
// back to.
//
// relay_record (a peerwire.Extension feeding the Client's records), a
// fleet's quiet Serve and Reach hang on it through hook and each
// wireBundle's fleet (wirerecords.go, wireswarm.go). Still to hang on it:
// the swarm's push (wireBundle's peers and the peerwire.Torrent's seeds).
type wireClient struct {
	c     *Client
	pw    *peerwire.Client
	store *completion // the bundles' state files, as on the other engine
	wg    sync.WaitGroup

	addMu   sync.Mutex // serialises adds and drops of bundles
	mu      sync.Mutex
	bundles map[record.Infohash]*wireBundle
	banned  map[netip.Addr]bool // addresses banned in bundles since dropped
	closed  bool

	// down paces the pieces fetches take in (Config.DownloadRate); nil:
	// no cap.
	down *rate.Limiter
}

// wireBundle is a bundle of the wire engine. Its fields are under the
// wireClient's mu; t, info and files are set once, when its info is
// known (attach).
type wireBundle struct {
	ih     record.Infohash
	w      *wireClient
	ctx    context.Context // ends when the bundle leaves the client
	cancel context.CancelFunc
	wake   chan struct{} // tells the announcer a fetch started, or a seed
	sem    chan struct{} // one Fetch of the bundle at a time
	hashed atomic.Int64  // bytes hashed to learn which pieces are here

	attachMu sync.Mutex
	t        *peerwire.Torrent // nil until the info is known
	info     *metainfo.Info
	files    *wireFiles

	seeding   bool
	fetches   int
	seedSince time.Time
	peers     map[netip.AddrPort]bool // named for it (DHT, FetchRequest.Peers)
	more      chan string             // the running download's new peers, or nil
	dialing   int                     // connections it dials to serve
	fleet     wireFleet               // relay_record, quiet serving and Reach (wireswarm.go)
}

// maxWirePeers bounds the peers a bundle remembers to dial.
const maxWirePeers = 1000

// maxSeedDials bounds the connections a seeded bundle dials at once to
// peers the DHT names (that may not reach it: behind NAT).
const maxSeedDials = 8

func newWireClient(c *Client, host string, perIP int) (*wireClient, error) {
	pc := peerwire.Config{
		MaxConns:      bundleConns,
		UploadRate:    c.cfg.UploadRate,
		HTTPTransport: c.cfg.HTTPTransport,
	}
	copy(pc.PeerID[:], peerIDPrefix)
	rand.Read(pc.PeerID[len(peerIDPrefix):])
	if nw := c.cfg.Network; nw != nil {
		pc.Dial = func(ctx context.Context, addr string) (net.Conn, error) { return nw.DialContext(ctx, "tcp", addr) }
	} else {
		d := net.Dialer{FallbackDelay: -1, KeepAlive: -1}
		pc.Dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	s, err := c.utpSocket(host) // wireutp.go
	if err != nil {
		return nil, err
	}
	if s != nil {
		tcp := pc.Dial
		pc.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
			return dialFirst(ctx, addr, tcp, func(ctx context.Context, addr string) (net.Conn, error) {
				return s.DialContext(ctx, "udp", addr)
			})
		}
	}
	w := &wireClient{
		c: c, store: newCompletion(c.log),
		bundles: make(map[record.Infohash]*wireBundle), banned: make(map[netip.Addr]bool),
	}
	w.hook(&pc) // relay_record and Reach's notes (wireswarm.go)
	w.pw = peerwire.New(pc)
	if r := c.cfg.DownloadRate; r > 0 {
		w.down = rate.NewLimiter(rate.Limit(r), int(min(r, 256<<10)))
	}
	w.serve("TCP", closingListener{newPeerListener(c.tcp, perIP, c.ctx.Done()), c.tcp})
	w.serveUTP(s, perIP)
	w.wg.Go(w.background)
	return w, nil
}

// waitRate waits until n more bytes of pieces may be taken in within
// Config.DownloadRate. It paces the pieces a download hands over, so the
// cap holds over time, while the bytes a download holds in memory
// (peerwire.Config.InFlight) may come in faster.
func (w *wireClient) waitRate(ctx context.Context, n int) error {
	if w.down == nil {
		return nil
	}
	for n > 0 {
		k := min(n, w.down.Burst())
		if err := w.down.WaitN(ctx, k); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// closingListener is a peerListener that closes the socket under it.
type closingListener struct {
	*peerListener
	io.Closer
}

// background saves changed bundle states every two seconds until the
// client closes.
func (w *wireClient) background() {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-w.c.ctx.Done():
			return
		case <-t.C:
			w.store.saveAll()
		}
	}
}

// close stops every transfer, waits for the engine's goroutines, and
// saves the bundles' states.
func (w *wireClient) close() error {
	w.mu.Lock()
	w.closed = true
	var bs []*wireBundle
	for _, b := range w.bundles {
		bs = append(bs, b)
	}
	w.mu.Unlock()
	w.c.cancel() // Serve, the announcers, fetches and their connections
	w.pw.Close() // and FetchInfo's connections that no download took
	w.wg.Wait()
	var errs []error
	for _, b := range bs {
		errs = append(errs, w.release(b))
	}
	return errors.Join(errs...)
}

// add returns the bundle ih, added (without its info) if the client does
// not hold it.
func (w *wireClient) add(ih record.Infohash) (*wireBundle, error) {
	w.addMu.Lock()
	defer w.addMu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, errClosed
	}
	if b := w.bundles[ih]; b != nil {
		return b, nil
	}
	b := &wireBundle{
		ih: ih, w: w, wake: make(chan struct{}, 1), sem: make(chan struct{}, 1),
		peers: make(map[netip.AddrPort]bool),
	}
	b.ctx, b.cancel = context.WithCancel(w.c.ctx)
	w.bundles[ih] = b
	if w.c.cfg.DHT != nil {
		w.wg.Go(func() { w.c.announce(b.ctx, ih, b) })
	}
	return b, nil
}

// attach gives bundle b its info: it opens the bundle's state, hashes the
// pieces whose completion the state file does not vouch for, and adds
// the torrent to the peerwire.Client with the pieces that verified.
func (w *wireClient) attach(ctx context.Context, b *wireBundle, info *metainfo.Info, infoBytes []byte) error {
	b.attachMu.Lock()
	defer b.attachMu.Unlock()
	w.mu.Lock()
	done := b.t != nil
	w.mu.Unlock()
	if done {
		return nil
	}
	dir := filepath.Join(w.c.root, b.ih.String())
	if err := w.store.open(dir, b.ih, info); err != nil {
		return err
	}
	files := newWireFiles(spans(dir, info))
	fail := func(err error) error {
		files.Close()
		w.store.close(b.ih)
		return err
	}
	if err := w.hashUnknown(ctx, b, info, files); err != nil {
		return fail(err)
	}
	complete, _, _, _ := w.store.view(b.ih)
	o := peerwire.TorrentOptions{Have: func(i int) bool { return complete[i] }}
	w.seedOptions(b, info, &o)
	t, err := w.pw.Add(infoBytes, files, o)
	if err != nil {
		return fail(fmt.Errorf("bundle %s: %w", b.ih, err))
	}
	w.mu.Lock()
	b.t, b.info, b.files = t, info, files
	w.mu.Unlock()
	return nil
}

// hashUnknown hashes each piece of bundle b whose completion is not known
// and records whether it verified.
func (w *wireClient) hashUnknown(ctx context.Context, b *wireBundle, info *metainfo.Info, files *wireFiles) error {
	buf := make([]byte, info.PieceLength)
	total := info.TotalLength()
	for _, i := range w.store.unknown(b.ih) {
		if err := ctx.Err(); err != nil {
			return err
		}
		off := int64(i) * info.PieceLength
		data := buf[:min(info.PieceLength, total-off)]
		_, err := files.ReadAt(data, off)
		ok := false
		if err == nil {
			sum := sha1.Sum(data)
			ok = string(sum[:]) == string(info.Pieces[20*i:20*i+20])
			b.hashed.Add(int64(len(data)))
		}
		w.store.Set(metainfo.PieceKey{InfoHash: metainfo.Hash(b.ih), Index: i}, ok)
	}
	return nil
}

// drop removes bundle b from the client when nothing uses it.
func (w *wireClient) drop(b *wireBundle) {
	w.addMu.Lock()
	defer w.addMu.Unlock()
	w.mu.Lock()
	if b.seeding || b.fetches > 0 || w.bundles[b.ih] != b {
		w.mu.Unlock()
		return
	}
	delete(w.bundles, b.ih)
	w.mu.Unlock()
	if err := w.release(b); err != nil {
		w.c.log.Warn("failed to save bundle state", "infohash", b.ih, "err", err)
	}
}

// release ends bundle b's announcer and connections, saves its state and
// closes its files.
func (w *wireClient) release(b *wireBundle) error {
	b.cancel()
	w.mu.Lock()
	t, files := b.t, b.files
	w.mu.Unlock()
	if t == nil {
		return nil
	}
	w.mu.Lock()
	for _, a := range t.Banned() {
		if ap, err := netip.ParseAddrPort(a); err == nil {
			w.banned[ap.Addr().Unmap()] = true
		}
	}
	w.mu.Unlock()
	w.pw.Remove(t)
	err := w.store.close(b.ih)
	return errors.Join(err, files.Close())
}

// bundle returns the bundle ih, nil if the client does not hold it.
func (w *wireClient) bundle(ih record.Infohash) *wireBundle {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bundles[ih]
}

// dropSeed is Drop.
func (w *wireClient) dropSeed(ih record.Infohash) {
	w.mu.Lock()
	b := w.bundles[ih]
	if b != nil {
		b.seeding = false
	}
	w.mu.Unlock()
	if b != nil {
		w.drop(b)
	}
}

// unload is Unload.
func (w *wireClient) unload(ih record.Infohash) bool {
	if b := w.bundle(ih); b != nil {
		w.drop(b)
	}
	return w.bundle(ih) == nil
}

// seeding is Seeding.
func (w *wireClient) seeding(ih record.Infohash) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	b := w.bundles[ih]
	return b != nil && b.seeding
}

// stats is Stats.
func (w *wireClient) stats(ih record.Infohash) (Stats, bool) {
	w.mu.Lock()
	b := w.bundles[ih]
	var t *peerwire.Torrent
	if b != nil {
		t = b.t
	}
	w.mu.Unlock()
	if b == nil {
		return Stats{}, false
	}
	s := Stats{Hashed: b.hashed.Load()}
	if t != nil {
		st := t.Stats()
		s.Size, s.Have, s.Peers = t.Length(), st.Bytes, st.Peers
		s.CompletePeers = min(st.SeedsSeen, MaxCompletePeers)
		s.Uploaded, s.Downloaded = st.Uploaded, st.Downloaded
		s.Hashed += st.Downloaded
	}
	return s, true
}

// bannedIPs is Banned: the addresses of peers that sent a piece that
// failed its check, in every bundle the client held.
func (w *wireClient) bannedIPs() []string {
	w.mu.Lock()
	out := make([]string, 0, len(w.banned))
	for a := range w.banned {
		out = append(out, a.String())
	}
	var ts []*peerwire.Torrent
	for _, b := range w.bundles {
		if b.t != nil {
			ts = append(ts, b.t)
		}
	}
	w.mu.Unlock()
	for _, t := range ts {
		for _, a := range t.Banned() {
			if ap, err := netip.ParseAddrPort(a); err == nil {
				out = append(out, ap.Addr().Unmap().String())
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// seed is Seed, and with quiet Serve, on the wire engine.
func (w *wireClient) seed(ctx context.Context, ih record.Infohash, quiet bool) (*Bundle, error) {
	dir := filepath.Join(w.c.root, ih.String())
	info, infoBytes, err := loadMetainfo(dir, ih)
	if err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	b, err := w.add(ih)
	if err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	w.mu.Lock()
	if !quiet || !b.seeding {
		b.fleet.quiet = quiet
	}
	b.seeding = true
	if b.seedSince.IsZero() {
		b.seedSince = time.Now()
	}
	w.mu.Unlock()
	fail := func(err error) (*Bundle, error) {
		w.mu.Lock()
		b.seeding = false
		w.mu.Unlock()
		w.drop(b)
		return nil, fmt.Errorf("seed: %w", err)
	}
	if err := w.attach(ctx, b, info, infoBytes); err != nil {
		return fail(err)
	}
	complete, _, expected, ok := w.store.view(ih)
	if !ok {
		return fail(fmt.Errorf("bundle %s is not open", ih))
	}
	bundle, _, err := seedable(w.c.root, ih, info, complete, expected)
	if err != nil {
		return fail(err)
	}
	w.mu.Lock()
	b.fleet.key = bundle.Manifest.Key
	w.mu.Unlock()
	b.wakeUp()
	w.c.log.Debug("seeding", "infohash", ih, "name", bundle.Name)
	return bundle, nil
}

// wakeUp tells the bundle's announcer to look at it again now.
func (b *wireBundle) wakeUp() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

func (b *wireBundle) announceState() (fetching, seeding, quiet bool, since time.Time) {
	b.w.mu.Lock()
	defer b.w.mu.Unlock()
	return b.fetches > 0, b.seeding, b.fleet.quiet, b.seedSince
}

func (b *wireBundle) woken() <-chan struct{} { return b.wake }

// found takes peers named for the bundle: the running download dials
// them; with none, a seeded bundle dials them itself (a fetch behind NAT
// cannot dial it), at most maxSeedDials at once.
func (b *wireBundle) found(peers []netip.AddrPort) int {
	w := b.w
	var fresh []netip.AddrPort
	w.mu.Lock()
	others := w.c.otherPeers(peers)
	b.fleet.reach.notePeers(others)
	for _, p := range others {
		if !b.peers[p] && len(b.peers) < maxWirePeers {
			b.peers[p] = true
			fresh = append(fresh, p)
		}
	}
	more, t, seeding := b.more, b.t, b.seeding
	w.mu.Unlock()
	for _, p := range fresh {
		switch {
		case more != nil:
			select {
			case more <- p.String():
			default: // the download has them all when it starts again
			}
		case seeding && t != nil:
			b.dial(t, p, maxSeedDials)
		}
	}
	return len(fresh)
}

// dial connects t to the peer at p, unless the bundle already dials
// limit peers, and keeps the connection until the bundle leaves the
// client.
func (b *wireBundle) dial(t *peerwire.Torrent, p netip.AddrPort, limit int) {
	w := b.w
	w.mu.Lock()
	if b.dialing >= limit || w.closed {
		w.mu.Unlock()
		return
	}
	b.dialing++
	w.wg.Add(1)
	w.mu.Unlock()
	go func() {
		defer w.wg.Done()
		t.Connect(b.ctx, p.String())
		w.mu.Lock()
		b.dialing--
		w.mu.Unlock()
	}()
}

func (b *wireBundle) seedConnected() bool {
	b.w.mu.Lock()
	t := b.t
	b.w.mu.Unlock()
	return t != nil && t.Stats().Seeds > 0
}
