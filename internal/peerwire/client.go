package peerwire

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	pp "github.com/anacrolix/torrent/peer_protocol"
)

// Config configures a Client. The zero value of every field is a
// documented default.
type Config struct {
	// PeerID is the client's BEP 3 peer id. Zero: "-RW0001-" and 12
	// random bytes.
	PeerID [20]byte
	// Dial opens a connection to a peer. Nil: TCP with net.Dialer.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// MaxConns bounds the connections of each torrent, dialled and
	// accepted. Zero: 50.
	MaxConns int
	// ConnsPerIP bounds the connections a torrent accepts from one IP
	// address once it holds half its MaxConns: one beyond is closed after
	// its handshake, so that hosts holding idle connections cannot take
	// every place. Zero: 4.
	ConnsPerIP int
	// Requests bounds the requests a download keeps queued at one peer
	// (also bounded by the reqq the peer announces, 250 when it announces
	// none). Zero: 500.
	Requests int
	// InFlight bounds the bytes of the pieces a download holds in memory
	// while their blocks arrive, whatever peers do; at least two pieces are
	// held. Zero: 64 MiB.
	InFlight int64
	// UploadSlots is how many interested peers a torrent unchokes at once.
	// Zero: 8.
	UploadSlots int
	// SlotIdle is how long an unchoked peer may request nothing before
	// its slot goes to a peer waiting for one. Zero: 30 s.
	SlotIdle time.Duration
	// UploadRate caps the bytes per second of piece data the client
	// sends, over all peers, after a first burst of at most a second's
	// worth and 1 MiB. Zero: no cap.
	UploadRate int64
	// Extensions are the BEP 10 extensions the client offers besides
	// ut_metadata (BEP 9).
	Extensions []Extension
	// OnConnect, when set, is called with each peer that joined a
	// torrent, its handshakes over, from that peer's goroutine before its
	// first message is read.
	OnConnect func(p *Peer)
	// HandshakeTimeout bounds dialling a peer and the handshakes. Zero:
	// 20 s.
	HandshakeTimeout time.Duration
	// IdleTimeout drops a peer that sent nothing, not even a keep-alive,
	// for that long. Zero: 3 minutes (peers send keep-alives every 2).
	IdleTimeout time.Duration
	// SnubTimeout drops a peer that has requests of a download queued and
	// sent no block for that long; its requests go to other peers. Zero:
	// 20 s.
	SnubTimeout time.Duration
	// WebSeedRequests bounds the requests a download has at one web seed
	// at once, each for a piece (its buffer besides InFlight). Zero: 2.
	WebSeedRequests int
	// HTTPTransport makes the requests to web seeds. Nil:
	// http.DefaultTransport.
	HTTPTransport http.RoundTripper
	// MaxInfoSize bounds the info dictionary FetchInfo takes. Zero: 8 MiB.
	MaxInfoSize int
	// NoPEX turns peer exchange (BEP 11, ut_pex) off: the client neither
	// tells peers which peers it is connected to nor dials those they
	// tell. Zero: on (see Torrent.Download).
	NoPEX bool
}

// Version is the v the client announces in its extended handshake.
const Version = "relay peerwire 0.1"

// Client speaks the BitTorrent peer wire for the torrents added to it:
// it fetches their info from peers, downloads them, and serves them.
type Client struct {
	cfg Config
	up  *limiter
	pex pexTiming
	// listenPort is the port of the last listener Serve was given (0:
	// none), announced in extended handshakes.
	listenPort atomic.Uint32
	// parkFor is how long FetchInfo's connections wait for a dial of the
	// torrent (handover.go).
	parkFor time.Duration

	// closed is set by Close, under mu.
	closed atomic.Bool

	mu       sync.Mutex
	torrents map[metainfo.Hash]*Torrent
	parked   map[metainfo.Hash]map[string]*parkedConn // by address
}

// ErrClosed is returned for work asked of a closed Client.
var ErrClosed = errors.New("peerwire client closed")

// Close closes the connections FetchInfo kept for a download and those
// of every torrent, and the client refuses new work: Add, FetchInfo,
// dials and accepted connections fail with ErrClosed from then on.
// Goroutines running a connection (a Download's, Connect's, Serve's)
// return once it is closed; Serve returns when its ctx ends.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed.Store(true)
	var parked []*parkedConn
	for ih, m := range c.parked {
		for _, pc := range m {
			pc.timer.Stop()
			parked = append(parked, pc)
		}
		delete(c.parked, ih)
	}
	var ts []*Torrent
	for _, t := range c.torrents {
		ts = append(ts, t)
	}
	c.mu.Unlock()
	for _, pc := range parked {
		pc.conn.Close()
	}
	for _, t := range ts {
		t.closeConns()
	}
	return nil
}

// isClosed reports whether Close was called.
func (c *Client) isClosed() bool { return c.closed.Load() }

// New returns a client configured by cfg.
func New(cfg Config) *Client {
	if cfg.PeerID == ([20]byte{}) {
		copy(cfg.PeerID[:], "-RW0001-")
		rand.Read(cfg.PeerID[8:])
	}
	if cfg.Dial == nil {
		var d net.Dialer
		cfg.Dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&cfg.MaxConns, 50)
	def(&cfg.ConnsPerIP, 4)
	def(&cfg.Requests, 500)
	def(&cfg.UploadSlots, 8)
	def(&cfg.MaxInfoSize, 8<<20)
	def(&cfg.WebSeedRequests, 2)
	if cfg.InFlight <= 0 {
		cfg.InFlight = 64 << 20
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defd(&cfg.HandshakeTimeout, 20*time.Second)
	defd(&cfg.IdleTimeout, 3*time.Minute)
	defd(&cfg.SnubTimeout, 20*time.Second)
	defd(&cfg.SlotIdle, 30*time.Second)
	return &Client{cfg: cfg, up: newLimiter(cfg.UploadRate), pex: defaultPEXTiming, parkFor: defaultParkFor,
		torrents: map[metainfo.Hash]*Torrent{}, parked: map[metainfo.Hash]map[string]*parkedConn{}}
}

// PeerID returns the client's peer id.
func (c *Client) PeerID() [20]byte { return c.cfg.PeerID }

// maxPieceLength bounds a torrent's piece length: a download holds whole
// pieces in memory.
const maxPieceLength = 64 << 20

// ParseInfo decodes a BitTorrent v1 info dictionary and checks that it
// describes a torrent this package can move: pieces of at most 64 MiB,
// as many piece hashes as the files' length needs, safe file paths.
func ParseInfo(infoBytes []byte) (*metainfo.Info, error) {
	var info metainfo.Info
	if err := bencode.Unmarshal(infoBytes, &info); err != nil {
		return nil, fmt.Errorf("failed to decode the info: %w", err)
	}
	if info.HasV2() && len(info.Pieces) == 0 {
		return nil, errors.New("a BitTorrent v2 only torrent")
	}
	if info.PieceLength <= 0 || info.PieceLength > maxPieceLength {
		return nil, fmt.Errorf("piece length %d out of range (1 byte to 64 MiB)", info.PieceLength)
	}
	if _, _, err := layout(&info); err != nil {
		return nil, err
	}
	total := info.TotalLength()
	if total <= 0 {
		return nil, errors.New("an empty torrent")
	}
	n := (total + info.PieceLength - 1) / info.PieceLength
	if int64(len(info.Pieces)) != 20*n {
		return nil, fmt.Errorf("%d bytes of piece hashes for %d pieces", len(info.Pieces), n)
	}
	return &info, nil
}

// Torrent is one torrent of a Client: its info, where its bytes are, and
// which pieces it has (verified).
type Torrent struct {
	c         *Client
	ih        metainfo.Hash
	infoBytes []byte
	info      *metainfo.Info
	pieceLen  int64
	length    int64
	npieces   int
	store     Storage

	mu      sync.Mutex
	have    bitfield
	nhave   int
	peers   map[*Peer]struct{}
	avail   []int32 // by piece, peers that have it (besides seeds)
	seeds   int     // peers that have every piece
	dl      *download
	slots   int         // peers unchoked
	waiting []*Peer     // interested peers waiting for a slot, oldest first
	rotate  *time.Timer // looks for idle slots while peers wait
	// badPieces counts the pieces that failed their SHA-1 check.
	badPieces int
	// banned are the addresses of peers that sent a bad piece.
	banned map[string]bool

	// seen holds the peer ids of the peers seen with every piece, at
	// most MaxSeedsSeen.
	seen map[[20]byte]struct{}

	// uploaded and downloaded count the piece data sent to peers and
	// received from them (blocks a download took), since the torrent was
	// added.
	uploaded, downloaded atomic.Int64
	// ss is the state of initial seeding, nil when the torrent does not
	// serve so.
	ss *initialSeeding
}

// TorrentOptions says what a Torrent starts with.
type TorrentOptions struct {
	// Have, when set, says which pieces Storage already holds, verified:
	// the torrent serves them and a download does not fetch them.
	Have func(piece int) bool
	// InitialSeeding serves the torrent, to the peers that connect while
	// it has every piece, as its first seed (BEP 16, super-seeding):
	// instead of its pieces it announces to each peer one piece at a
	// time, that peer's offer, and answers requests for that piece only,
	// each byte once; a peer is offered its next piece once it has its
	// offer and another peer announced that piece (it passed it on), so
	// that each piece leaves the seed about once while the peers copy
	// them among themselves. See superseed.go for the rules.
	InitialSeeding bool
	// PassOnWait is how long, in initial seeding, a peer that has its
	// offered piece waits for another peer to announce it before it is
	// offered its next piece anyway (a peer that passes nothing on gets a
	// piece per PassOnWait). A lone peer, or one whose offer every other
	// peer has, does not wait. Zero: 10 s.
	PassOnWait time.Duration
	// OpenPieces, when set, says which pieces initial seeding tells
	// every peer of at once and serves to any, outside the offers: relay
	// opens the pieces of relay.json, which its fetch wants before any
	// other.
	OpenPieces func(piece int) bool
}

// Add adds the torrent of an info dictionary (its exact bytes, which hash
// to its infohash) whose bytes are in (or go to) store, and returns it.
// Adding a torrent the client has returns an error.
func (c *Client) Add(infoBytes []byte, store Storage, o TorrentOptions) (*Torrent, error) {
	info, err := ParseInfo(infoBytes)
	if err != nil {
		return nil, err
	}
	t := &Torrent{
		c: c, ih: sha1.Sum(infoBytes), infoBytes: infoBytes, info: info,
		pieceLen: info.PieceLength, length: info.TotalLength(), npieces: len(info.Pieces) / 20,
		store: store, peers: map[*Peer]struct{}{}, banned: map[string]bool{}, seen: map[[20]byte]struct{}{},
	}
	t.have = newBitfield(t.npieces)
	t.avail = make([]int32, t.npieces)
	if o.InitialSeeding {
		t.ss = newInitialSeeding(t, o)
	}
	if o.Have != nil {
		for i := range t.npieces {
			if o.Have(i) {
				t.have.set(i)
				t.nhave++
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return nil, ErrClosed
	}
	if c.torrents[t.ih] != nil {
		return nil, fmt.Errorf("torrent %s already added", t.ih.HexString())
	}
	c.torrents[t.ih] = t
	return t, nil
}

// Remove removes t from the client and closes its connections.
func (c *Client) Remove(t *Torrent) {
	c.mu.Lock()
	if c.torrents[t.ih] == t {
		delete(c.torrents, t.ih)
	}
	c.mu.Unlock()
	t.closeConns()
}

// closeConns closes the connections of t's peers.
func (t *Torrent) closeConns() {
	t.mu.Lock()
	for p := range t.peers {
		p.conn.Close()
	}
	t.mu.Unlock()
}

func (c *Client) torrent(ih metainfo.Hash) *Torrent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.torrents[ih]
}

// Infohash returns the torrent's infohash.
func (t *Torrent) Infohash() metainfo.Hash { return t.ih }

// Info returns the torrent's info.
func (t *Torrent) Info() *metainfo.Info { return t.info }

// Length returns the torrent's length in bytes.
func (t *Torrent) Length() int64 { return t.length }

// pieceSize is the length of piece i.
func (t *Torrent) pieceSize(i int) int64 {
	if i == t.npieces-1 {
		return t.length - int64(i)*t.pieceLen
	}
	return t.pieceLen
}

// pieceHash is the SHA-1 piece i must have.
func (t *Torrent) pieceHash(i int) []byte { return t.info.Pieces[20*i : 20*i+20] }

// MaxSeedsSeen bounds Stats.SeedsSeen, and the memory a torrent's
// record of them takes.
const MaxSeedsSeen = 1000

// Stats are a torrent's figures at one moment.
type Stats struct {
	// Pieces is how many pieces the torrent has verified, of Total.
	Pieces, Total int
	// Bytes is how many bytes those pieces hold.
	Bytes int64
	// Peers is how many peers are connected, Seeds how many of them have
	// every piece. SeedsSeen is how many distinct peers (by peer id) were
	// seen with every piece since the torrent was added, connected or not,
	// up to MaxSeedsSeen.
	Peers, Seeds, SeedsSeen int
	// Uploaded and Downloaded count the bytes of piece data sent to peers
	// and received from peers and web seeds since the torrent was added.
	Uploaded, Downloaded int64
}

// Stats returns the torrent's figures now.
func (t *Torrent) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stats()
}

func (t *Torrent) stats() Stats {
	b := int64(t.nhave) * t.pieceLen
	if t.npieces > 0 && t.have.has(t.npieces-1) {
		b += t.pieceSize(t.npieces-1) - t.pieceLen
	}
	return Stats{
		Pieces: t.nhave, Total: t.npieces, Bytes: b, Peers: len(t.peers), Seeds: t.seeds, SeedsSeen: len(t.seen),
		Uploaded: t.uploaded.Load(), Downloaded: t.downloaded.Load(),
	}
}

// Complete reports whether the torrent has every piece.
func (t *Torrent) Complete() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.nhave == t.npieces
}

// Check reads every piece the torrent does not have from its Storage and
// marks those whose SHA-1 verifies, and returns how many it has then.
func (t *Torrent) Check(ctx context.Context) (int, error) {
	buf := make([]byte, t.pieceLen)
	for i := range t.npieces {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		t.mu.Lock()
		had := t.have.has(i)
		t.mu.Unlock()
		if had {
			continue
		}
		b := buf[:t.pieceSize(i)]
		if _, err := t.store.ReadAt(b, int64(i)*t.pieceLen); err != nil {
			continue
		}
		if h := sha1.Sum(b); string(h[:]) == string(t.pieceHash(i)) {
			t.mu.Lock()
			t.gotPiece(i)
			t.mu.Unlock()
		}
	}
	return t.Stats().Pieces, nil
}

// gotPiece marks piece i verified and tells the peers. t.mu is held.
func (t *Torrent) gotPiece(i int) {
	if t.have.has(i) {
		return
	}
	t.have.set(i)
	t.nhave++
	for p := range t.peers {
		p.send(appendMsg(nil, pp.Have, uint32(i)))
	}
}
