package peerwire

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/torrent/bencode"
	pp "github.com/anacrolix/torrent/peer_protocol"
)

// Timings of a connection.
const (
	keepAliveEvery = 2 * time.Minute
	writeTimeout   = time.Minute
	// ourReqq is the reqq this client announces: the requests of a peer it
	// queues; more are refused.
	ourReqq = 250
	// defaultReqq is the reqq of a peer that announces none (libtorrent's
	// default).
	defaultReqq = 250
	// maxOut bounds the bytes queued for a peer: one that sends requests
	// (rejected, or metadata answered) and does not read is cut off.
	maxOut = 4 << 20
)

// ErrBanned is returned (wrapped) for a peer dropped because it sent data
// that failed its SHA-1 check, and for a dial of a peer banned so.
var ErrBanned = errors.New("peer sent a bad piece")

// Peer is a connection to another BitTorrent client in one torrent. The
// extensions of Config.Extensions are handed a Peer.
type Peer struct {
	c      *Client
	t      *Torrent
	conn   net.Conn
	addr   string
	id     [20]byte
	fast   bool // BEP 6 on both sides
	ltep   bool // BEP 10 on both sides
	dialed bool
	r      *bufio.Reader

	// Under t.mu.
	theirExt     map[string]byte // their extended message ids
	reqq         int             // requests they queue
	extOn        []bool          // by Config.Extensions index: OnPeer was called
	has          bitfield
	nhas         int
	hasAll       bool
	choked       bool // they choke us
	interested   bool // they are interested in us
	amChoking    bool
	amInterested bool
	reqs         map[blockKey]struct{} // requests of the download queued at them
	listen       netip.AddrPort        // where they accept connections, if known
	pexTold      map[netip.AddrPort]struct{}
	pexSentAt    time.Time // when they were last sent a ut_pex message
	pexTakenAt   time.Time // when their last ut_pex message was taken
	pexTaken     int       // addresses their ut_pex messages brought
	active       time.Time // when they were unchoked or last requested
	lastBlock    time.Time // the last block received, or the first request queued after none
	inBlock      bool      // a block of theirs is being read

	wmu     sync.Mutex
	out     []byte    // messages waiting to be written
	writing bool      // messages taken from out are being written
	serving []request // their requests waiting to be served
	wake    chan struct{}
	pexWake chan struct{} // their extended handshake offers ut_pex

	uploaded, downloaded atomic.Int64
}

// request is a block asked for: piece, offset, length.
type request struct{ index, begin, length uint32 }

// Addr returns the peer's address.
func (p *Peer) Addr() string { return p.addr }

// ID returns the peer's peer id.
func (p *Peer) ID() [20]byte { return p.id }

// Torrent returns the torrent the peer is connected in.
func (p *Peer) Torrent() *Torrent { return p.t }

// Close closes the connection.
func (p *Peer) Close() { p.conn.Close() }

// Dialed reports whether this client dialled the peer (else the peer
// connected to it).
func (p *Peer) Dialed() bool { return p.dialed }

// ListenAddr returns where the peer accepts connections, if known: the
// address dialled, or for a peer that connected, its IP and the port its
// extended handshake named.
func (p *Peer) ListenAddr() (netip.AddrPort, bool) {
	p.t.mu.Lock()
	defer p.t.mu.Unlock()
	return p.listen, p.listen.IsValid()
}

// SendExtended sends the peer a message of the extension of Config.Extensions
// named name; the peer must have offered it (Extension.OnPeer was called).
func (p *Peer) SendExtended(name string, payload []byte) error {
	p.t.mu.Lock()
	id, ok := p.theirExt[name]
	p.t.mu.Unlock()
	if !ok || id == 0 {
		return fmt.Errorf("peer %s does not take %s messages", p.addr, name)
	}
	p.send(appendExtended(nil, id, payload))
	return nil
}

// send queues b to be written to the peer.
func (p *Peer) send(b []byte) {
	p.wmu.Lock()
	p.out = append(p.out, b...)
	p.wmu.Unlock()
	p.wakeWriter()
}

func (p *Peer) wakeWriter() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// hasPiece reports whether the peer has piece i. t.mu is held.
func (p *Peer) hasPiece(i int) bool { return p.hasAll || (p.has != nil && p.has.has(i)) }

// Connect dials the peer at addr (host:port) for t, outside a download,
// and runs the connection until ctx ends or the connection does, and
// returns why it ended. A seeder reaches so a peer it learnt of that
// cannot dial it (a fetch behind NAT); a banned address is not dialled,
// nor one t is connected to already.
func (t *Torrent) Connect(ctx context.Context, addr string) error {
	t.mu.Lock()
	banned, connected := t.banned[addr], t.connectedTo(addr)
	t.mu.Unlock()
	if banned {
		return fmt.Errorf("peer %s: %w", addr, ErrBanned)
	}
	if connected {
		return fmt.Errorf("peer %s: %w", addr, errConnected)
	}
	return t.dial(ctx, addr)
}

// dial connects to addr in t, and runs the connection until ctx ends or
// it does.
func (t *Torrent) dial(ctx context.Context, addr string) error {
	cfg := &t.c.cfg
	if t.c.isClosed() {
		return ErrClosed
	}
	if pc := t.c.unpark(t.ih, addr); pc != nil {
		return t.run(ctx, pc.conn, pc.r, pc.h, addr, true, pc)
	}
	hctx, cancel := context.WithTimeout(ctx, cfg.HandshakeTimeout)
	conn, err := cfg.Dial(hctx, addr)
	cancel()
	if err != nil {
		return err
	}
	conn.SetDeadline(time.Now().Add(cfg.HandshakeTimeout))
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	ours := handshake{reserved: ourReserved(), infohash: t.ih, peerID: cfg.PeerID}
	if _, err := conn.Write(ours.marshal()); err != nil {
		stop()
		conn.Close()
		return fmt.Errorf("failed to send the handshake: %w", err)
	}
	r := bufio.NewReaderSize(conn, 64<<10)
	h, err := readHandshake(r)
	stop()
	if err == nil && h.infohash != t.ih {
		err = fmt.Errorf("peer answered for infohash %x", h.infohash)
	}
	if err == nil && h.peerID == cfg.PeerID {
		err = errors.New("connected to itself")
	}
	if err != nil {
		conn.Close()
		return err
	}
	return t.run(ctx, conn, r, h, addr, true, nil)
}

// accept runs a connection a peer opened: its handshake names the
// torrent. handshaken is called once the handshakes are over.
func (c *Client) accept(ctx context.Context, conn net.Conn, handshaken func()) error {
	conn.SetDeadline(time.Now().Add(c.cfg.HandshakeTimeout))
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	r := bufio.NewReaderSize(conn, 64<<10)
	h, err := readHandshake(r)
	var t *Torrent
	if err == nil {
		if c.isClosed() {
			err = ErrClosed
		} else if t = c.torrent(h.infohash); t == nil {
			err = fmt.Errorf("no torrent %x here", h.infohash)
		} else if h.peerID == c.cfg.PeerID {
			err = errors.New("connected to itself")
		}
	}
	if err == nil {
		ours := handshake{reserved: ourReserved(), infohash: t.ih, peerID: c.cfg.PeerID}
		_, err = conn.Write(ours.marshal())
	}
	stop()
	handshaken()
	if err != nil {
		conn.Close()
		return err
	}
	return t.run(ctx, conn, r, h, conn.RemoteAddr().String(), false, nil)
}

// duplicate returns, when p's peer (by peer id) is connected already on
// other connections, those of them that close, or p itself: one
// connection per peer, as two that dialled each other at once would
// otherwise keep both, and split their requests and double their
// messages. Of connections from the same IP address, the one whose
// dialler has the lowest peer id and, of one dialler's, the lowest port
// stays: both ends order them alike, whatever order they came in. From
// another address, p closes: a peer cannot push out another's connection
// by naming its id. t.mu is held.
func (t *Torrent) duplicate(p *Peer) []*Peer {
	var same []*Peer
	for q := range t.peers {
		if q.id == p.id {
			same = append(same, q)
		}
	}
	if len(same) == 0 {
		return nil
	}
	pa, _ := addrPortOf(p.conn.RemoteAddr())
	for _, q := range same {
		if qa, _ := addrPortOf(q.conn.RemoteAddr()); qa.Addr() != pa.Addr() {
			return []*Peer{p}
		}
	}
	if slices.ContainsFunc(same, func(q *Peer) bool { return t.connOrder(q, p) < 0 }) {
		return []*Peer{p}
	}
	return same
}

// connOrder orders two connections to one peer: by their dialler's peer
// id, then the port it dialled from.
func (t *Torrent) connOrder(x, y *Peer) int {
	key := func(p *Peer) ([20]byte, uint16) {
		if p.dialed {
			a, _ := addrPortOf(p.conn.LocalAddr())
			return t.c.cfg.PeerID, a.Port()
		}
		a, _ := addrPortOf(p.conn.RemoteAddr())
		return p.id, a.Port()
	}
	xi, xp := key(x)
	yi, yp := key(y)
	if c := bytes.Compare(xi[:], yi[:]); c != 0 {
		return c
	}
	return cmp.Compare(xp, yp)
}

// errConnected is returned for a dial of a peer a torrent is connected
// to already.
var errConnected = errors.New("already connected")

// errTooMany is returned for a connection over Config.MaxConns.
var errTooMany = errors.New("too many connections")

// run runs a connection whose handshakes are done until ctx ends or the
// connection does, and returns why it ended. resumed, when not nil, is
// the parked connection of FetchInfo it is (handover.go).
func (t *Torrent) run(ctx context.Context, conn net.Conn, r *bufio.Reader, h handshake, addr string, dialed bool, resumed *parkedConn) error {
	cfg := &t.c.cfg
	p := &Peer{
		c: t.c, t: t, conn: conn, addr: addr, id: h.peerID, r: r, dialed: dialed,
		fast: h.fast(), ltep: h.extended(),
		choked: true, amChoking: true, reqq: defaultReqq,
		extOn: make([]bool, len(cfg.Extensions)),
		reqs:  map[blockKey]struct{}{}, wake: make(chan struct{}, 1), pexWake: make(chan struct{}, 1),
	}
	if ap, ok := addrPortOf(conn.RemoteAddr()); ok && dialed {
		p.listen = ap
	}
	t.mu.Lock()
	if len(t.peers) >= cfg.MaxConns || !dialed && len(t.peers) >= cfg.MaxConns/2 && t.fromIP(addr) >= cfg.ConnsPerIP {
		t.mu.Unlock()
		conn.Close()
		return errTooMany
	}
	if t.banned[addr] {
		t.mu.Unlock()
		conn.Close()
		return ErrBanned
	}
	if t.c.isClosed() {
		// Checked under t.mu: Close closes the peers it finds after
		// setting closed.
		t.mu.Unlock()
		conn.Close()
		return ErrClosed
	}
	dup := t.duplicate(p)
	if slices.Contains(dup, p) {
		t.mu.Unlock()
		conn.Close()
		return errConnected
	}
	for _, q := range dup {
		q.conn.Close() // its run drops it
	}
	t.peers[p] = struct{}{}
	// BEP 3 and 6: what it has comes first.
	switch {
	case resumed != nil:
		// FetchInfo announced HaveNone (or nothing): haves follow.
		for i := range t.npieces {
			if t.have.has(i) {
				p.out = appendMsg(p.out, pp.Have, uint32(i))
			}
		}
	case t.joinInitialSeeding(p):
	case p.fast && t.nhave == t.npieces:
		p.out = appendMsg(p.out, pp.HaveAll)
	case p.fast && t.nhave == 0:
		p.out = appendMsg(p.out, pp.HaveNone)
	case t.nhave > 0:
		p.out = appendBitfield(p.out, t.have)
	}
	if p.ltep {
		p.out = appendExtended(p.out, 0, t.extHandshake())
	}
	t.mu.Unlock()
	conn.SetDeadline(time.Time{})
	if cfg.OnConnect != nil {
		cfg.OnConnect(p)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	var wg sync.WaitGroup
	wg.Add(1)
	done := make(chan struct{})
	go func() {
		defer wg.Done()
		if err := p.writeLoop(done); err != nil {
			conn.Close()
		}
	}()
	p.wakeWriter()
	var err error
	if resumed != nil {
		err = p.replay(resumed)
	}
	if err == nil {
		err = p.readLoop()
	}
	conn.Close()
	close(done)
	stop()
	wg.Wait()
	t.mu.Lock()
	t.dropPeer(p)
	t.mu.Unlock()
	for i, on := range p.extOn {
		if on && cfg.Extensions[i].OnClose != nil {
			cfg.Extensions[i].OnClose(p)
		}
	}
	return err
}

// fromIP returns how many of t's connections are with the IP address of
// addr (host:port). t.mu is held.
func (t *Torrent) fromIP(addr string) int {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n := 0
	for q := range t.peers {
		if h, _, err := net.SplitHostPort(q.addr); err == nil && h == host {
			n++
		}
	}
	return n
}

// extHandshake is the payload of this client's extended handshake. t.mu
// is held.
func (t *Torrent) extHandshake() []byte {
	m := map[string]int{pp.ExtensionNameMetadata: metadataID}
	if !t.c.cfg.NoPEX {
		m[pexName] = pexID
	}
	for i, e := range t.c.cfg.Extensions {
		m[e.Name] = firstExtensionID + i
	}
	h := extHandshake{M: m, V: Version, Reqq: ourReqq, MetadataSize: len(t.infoBytes), P: int(t.c.listenPort.Load())}
	b, err := bencode.Marshal(h)
	if err != nil {
		panic(err) // a map of strings to ints and plain fields
	}
	return b
}

// Extended message ids this client receives under.
const (
	metadataID       = 1
	pexID            = 2
	firstExtensionID = 3
)

// extHandshake is the part of a BEP 10 extended handshake this package
// reads or writes.
type extHandshake struct {
	M            map[string]int `bencode:"m"`
	V            string         `bencode:"v,omitempty"`
	Reqq         int            `bencode:"reqq,omitempty"`
	MetadataSize int            `bencode:"metadata_size,omitempty"`
	// P is the port the peer accepts connections on.
	P int `bencode:"p,omitempty"`
}

// dropPeer forgets a closed peer: its requests go back to the download,
// its slot to a waiting peer. t.mu is held.
func (t *Torrent) dropPeer(p *Peer) {
	delete(t.peers, p)
	if t.ss != nil {
		t.ss.leave(p)
	}
	if t.dl != nil {
		t.dl.releaseAll(p)
		t.fillAll()
	}
	t.forgetHas(p)
	if !p.amChoking {
		p.amChoking = true
		t.slots--
		t.unchokeNext()
	}
	t.unwait(p)
}

// forgetHas takes p's pieces out of the availability counts. t.mu is held.
func (t *Torrent) forgetHas(p *Peer) {
	switch {
	case p.hasAll:
		t.seeds--
	case p.has != nil:
		for i := range t.npieces {
			if p.has.has(i) {
				t.avail[i]--
			}
		}
	}
	p.has, p.hasAll, p.nhas = nil, false, 0
}

// readLoop reads and handles the peer's messages until the connection
// fails or the peer breaks the protocol.
func (p *Peer) readLoop() error {
	var body []byte
	idle := p.c.cfg.IdleTimeout
	for {
		p.conn.SetReadDeadline(time.Now().Add(idle))
		typ, n, err := readHeader(p.r, p.t.npieces)
		if err != nil {
			return err
		}
		if n < 0 {
			continue // keep-alive
		}
		if typ == pp.Piece {
			if err := p.readBlock(n); err != nil {
				return err
			}
			continue
		}
		if cap(body) < n {
			body = make([]byte, n)
		}
		body = body[:n]
		if _, err := io.ReadFull(p.r, body); err != nil {
			return err
		}
		if err := p.handle(typ, body); err != nil {
			return err
		}
		p.wmu.Lock()
		queued := len(p.out)
		p.wmu.Unlock()
		if queued > maxOut {
			return errors.New("peer does not read what it is sent")
		}
	}
}

// handle acts on a message other than a piece.
func (p *Peer) handle(typ pp.MessageType, body []byte) error {
	t := p.t
	u32 := func(i int) uint32 { return binary.BigEndian.Uint32(body[4*i:]) }
	switch typ {
	case pp.Choke:
		t.mu.Lock()
		p.choked = true
		if t.dl != nil {
			t.dl.releaseAll(p)
			t.fillAll()
		}
		t.mu.Unlock()
	case pp.Unchoke:
		t.mu.Lock()
		p.choked = false
		t.fill(p)
		t.mu.Unlock()
	case pp.Interested:
		t.mu.Lock()
		p.interested = true
		t.considerUnchoke(p)
		t.mu.Unlock()
	case pp.NotInterested:
		t.mu.Lock()
		p.interested = false
		t.choke(p)
		t.mu.Unlock()
	case pp.Have:
		i := int(u32(0))
		if i >= t.npieces {
			return fmt.Errorf("have of piece %d of %d", i, t.npieces)
		}
		t.mu.Lock()
		t.peerHas(p, i)
		t.mu.Unlock()
	case pp.Bitfield:
		bf := bitfield(body)
		if !bf.valid(t.npieces) {
			return errors.New("malformed bitfield")
		}
		t.mu.Lock()
		t.forgetHas(p)
		if t.ss != nil {
			t.ss.claims(p, bf)
		}
		p.has = newBitfield(t.npieces)
		for i := range t.npieces {
			if bf.has(i) {
				t.peerHas(p, i)
			}
		}
		t.mu.Unlock()
	case pp.HaveAll:
		t.mu.Lock()
		t.forgetHas(p)
		t.isSeed(p)
		t.interest(p)
		t.mu.Unlock()
	case pp.HaveNone:
		t.mu.Lock()
		t.forgetHas(p)
		t.mu.Unlock()
	case pp.Request:
		p.onRequest(request{u32(0), u32(1), u32(2)})
	case pp.Cancel:
		p.onCancel(request{u32(0), u32(1), u32(2)})
	case pp.Reject:
		t.mu.Lock()
		if t.dl != nil {
			t.dl.rejected(p, request{u32(0), u32(1), u32(2)})
		}
		t.mu.Unlock()
	case pp.Extended:
		return p.onExtended(body[0], body[1:])
	}
	// Suggest, allowed fast, port and types this package does not know
	// are ignored.
	return nil
}

// peerHas notes that p has piece i. t.mu is held.
// isSeed counts p as a seed, and its peer id among those seen as one.
// t.mu is held.
func (t *Torrent) isSeed(p *Peer) {
	p.hasAll = true
	t.seeds++
	if len(t.seen) < MaxSeedsSeen {
		t.seen[p.id] = struct{}{}
	}
}

func (t *Torrent) peerHas(p *Peer, i int) {
	if p.hasAll {
		return
	}
	if p.has == nil {
		p.has = newBitfield(t.npieces)
	}
	if p.has.has(i) {
		return
	}
	p.has.set(i)
	p.nhas++
	t.avail[i]++
	if t.ss != nil {
		t.ss.has(p, i)
	}
	if p.nhas == t.npieces {
		// A seed: counted apart, so that the picker sees its pieces as
		// equally common.
		t.forgetHas(p)
		t.isSeed(p)
	}
	if t.dl != nil && t.dl.want.has(i) && !t.have.has(i) {
		if !p.amInterested {
			t.interest(p)
		} else if len(p.reqs) == 0 {
			// A peer that had nothing more for the download (an initial
			// seed, which announces one piece at a time) has one now.
			t.fill(p)
		}
	}
}

// interest sends p interested when the download wants a piece it has,
// and fills its queue. t.mu is held.
func (t *Torrent) interest(p *Peer) {
	if t.dl == nil || p.amInterested || !t.wants(p) {
		return
	}
	p.amInterested = true
	p.send(appendMsg(nil, pp.Interested))
	t.fill(p)
}

// wants reports whether p has a piece the download wants and t lacks.
// t.mu is held, and a download runs.
func (t *Torrent) wants(p *Peer) bool {
	for i := range t.npieces {
		if t.dl.want.has(i) && !t.have.has(i) && p.hasPiece(i) {
			return true
		}
	}
	return false
}

// onExtended handles an extended message (BEP 10).
func (p *Peer) onExtended(id byte, payload []byte) error {
	t := p.t
	exts := p.c.cfg.Extensions
	switch {
	case id == 0:
		var h extHandshake
		if err := bencode.Unmarshal(payload, &h); err != nil {
			return fmt.Errorf("malformed extended handshake: %w", err)
		}
		var offered []int
		t.mu.Lock()
		p.theirExt = map[string]byte{}
		for name, id := range h.M {
			if id > 0 && id < 256 {
				p.theirExt[name] = byte(id)
			}
		}
		if h.Reqq > 0 {
			p.reqq = h.Reqq
		}
		if ap, ok := addrPortOf(p.conn.RemoteAddr()); ok && !p.dialed && h.P > 0 && h.P < 1<<16 {
			p.listen = netip.AddrPortFrom(ap.Addr(), uint16(h.P))
		}
		if p.pexOn() {
			select {
			case p.pexWake <- struct{}{}:
			default:
			}
		}
		for i, e := range exts {
			if p.theirExt[e.Name] != 0 && !p.extOn[i] {
				p.extOn[i] = true
				offered = append(offered, i)
			}
		}
		t.fill(p)
		t.mu.Unlock()
		for _, i := range offered {
			if exts[i].OnPeer != nil {
				exts[i].OnPeer(p)
			}
		}
	case id == metadataID:
		p.serveMetadata(payload)
	case id == pexID:
		t.mu.Lock()
		on := p.pexOn()
		t.mu.Unlock()
		if on {
			p.onPEX(payload)
		}
	case int(id)-firstExtensionID < len(exts):
		i := int(id) - firstExtensionID
		e := exts[i]
		t.mu.Lock()
		on := p.extOn[i]
		t.mu.Unlock()
		if on && e.OnMessage != nil && len(payload) <= e.maxSize() {
			e.OnMessage(p, payload)
		}
	}
	return nil
}

// serveMetadata answers a ut_metadata request (BEP 9) with its piece of
// the info, or a reject.
func (p *Peer) serveMetadata(payload []byte) {
	var m pp.ExtendedMetadataRequestMsg
	if err := bencode.Unmarshal(payload, &m); err != nil || m.Type != pp.RequestMetadataExtensionMsgType {
		return // only requests are answered; anything else is ignored
	}
	t := p.t
	t.mu.Lock()
	id := p.theirExt[pp.ExtensionNameMetadata]
	t.mu.Unlock()
	if id == 0 {
		return
	}
	info := t.infoBytes
	p.wmu.Lock()
	full := len(p.out)+metadataPiece > maxOut
	p.wmu.Unlock()
	if full || m.Piece < 0 || m.Piece*metadataPiece >= len(info) {
		b, _ := bencode.Marshal(pp.ExtendedMetadataRequestMsg{Type: pp.RejectMetadataExtensionMsgType, Piece: m.Piece})
		p.send(appendExtended(nil, id, b))
		return
	}
	b, _ := bencode.Marshal(pp.ExtendedMetadataRequestMsg{Type: pp.DataMetadataExtensionMsgType, Piece: m.Piece, TotalSize: len(info)})
	end := min(len(info), (m.Piece+1)*metadataPiece)
	p.send(appendExtended(nil, id, append(b, info[m.Piece*metadataPiece:end]...)))
}

// metadataPiece is BEP 9's piece of the info: 16 KiB.
const metadataPiece = 16 << 10

// writeLoop writes queued messages and serves queued requests, until done
// is closed or a write fails.
func (p *Peer) writeLoop(done <-chan struct{}) error {
	// Keep-alives every 2 minutes (BEP 3), or half the idle time this
	// client allows, if shorter: peers are taken to allow as much.
	every := min(keepAliveEvery, p.c.cfg.IdleTimeout/2)
	ka := time.NewTimer(every)
	defer ka.Stop()
	pex := time.NewTimer(time.Hour)
	pex.Stop()
	defer pex.Stop()
	var spare, block []byte
	for {
		select {
		case <-done:
			return nil
		case <-p.wake:
		case <-p.pexWake:
			pex.Reset(0)
			continue
		case <-pex.C:
			pex.Reset(p.sharePEX())
		case <-ka.C:
			p.wmu.Lock()
			if len(p.out) == 0 {
				p.out = append(p.out, keepAlive...)
			}
			p.wmu.Unlock()
		}
		for {
			p.wmu.Lock()
			var out []byte
			if len(p.out) > 0 {
				out, p.out, spare = p.out, spare[:0], nil
				p.writing = true
			}
			var req request
			serve := len(out) == 0 && len(p.serving) > 0
			if serve {
				req = p.serving[0]
				p.serving = p.serving[1:]
			}
			p.wmu.Unlock()
			if len(out) > 0 {
				p.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
				if _, err := p.conn.Write(out); err != nil {
					return err
				}
				p.wmu.Lock()
				p.writing = false
				p.wmu.Unlock()
				spare = out
				ka.Reset(every)
				continue
			}
			if !serve {
				break
			}
			if cap(block) < blockHeader+int(req.length) {
				block = make([]byte, blockHeader+maxRequestLen)
			}
			if err := p.serveBlock(done, req, block[:blockHeader+int(req.length)]); err != nil {
				return err
			}
			ka.Reset(every)
		}
	}
}
