package peerwire

import (
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	pp "github.com/anacrolix/torrent/peer_protocol"
)

// DownloadOptions says where a download finds peers and whom it tells of
// its progress.
type DownloadOptions struct {
	// Peers are addresses (host:port) to dial. The connections
	// FetchInfo left open for the torrent are taken over, whether their
	// addresses are here or not.
	Peers []string
	// MorePeers, when set, brings addresses found later (from the DHT, a
	// tracker); the download reads it until it is closed or the download
	// ends.
	MorePeers <-chan string
	// OnPiece, when set, is called with each piece after its SHA-1
	// verified and it was written to the torrent's Storage, before the
	// torrent counts it as had: from one goroutine, one piece at a time,
	// in the order pieces verify (see InOrder). data is valid only during
	// the call. An error ends the download with it.
	OnPiece func(piece int, data []byte) error
	// Progress, when set, is called after each verified piece, from the
	// same goroutine as OnPiece.
	Progress func(Stats)
	// InOrder calls OnPiece in index order: a piece that verified waits
	// in memory (within Config.InFlight) for those before it. Without
	// it, pieces are handed over as they verify, within a window of the
	// requests queued: seeders answer queued requests in any order (the
	// torrent library's in random order).
	InOrder bool
	// WebSeeds are BEP 19 web seed URLs (http or https; a '/' is added
	// when missing) to fetch pieces from beside peers, the first 4, with
	// at most Config.WebSeedRequests requests at each. A web seed's piece is
	// checked before its bytes join the piece in flight; one that sends
	// a wrong answer (status, range, length, a piece that does not
	// verify) or fails 3 times in a row is dropped for the download.
	WebSeeds []string
	// WebSeedDropped, when set, is called with a web seed's URL and why
	// when the download drops it.
	WebSeedDropped func(url string, err error)
	// OnPEXPeer, when set, is called with each address peer exchange
	// (BEP 11) brings, before the download dials it: from the goroutine
	// that dials peers, at most 200 (pexMaxCandidates) at a time. The
	// download dials those after the addresses of Peers and MorePeers,
	// with at most half of Config.MaxConns, and forgets one that failed 3
	// times (see Config.NoPEX).
	OnPEXPeer func(addr string)
	// Want, when set, says which pieces to fetch (called once for each
	// piece when the download starts): the download returns once it has
	// those. Nil: every piece. relay fetches the pieces of relay.json
	// first, and then those of the files it wants.
	Want func(piece int) bool
	// Keep, when set, keeps the connections the download dialled that
	// are up when it completes until Keep ends (or the peer goes), to
	// serve the torrent and carry extension messages (relay_record) as
	// connections peers opened do; their goroutines end with Keep. Nil:
	// they close when the download returns. A download that fails or
	// whose ctx ends closes them either way.
	Keep context.Context
}

// Block states of a piece in flight.
const (
	blockFree      = iota // to be requested
	blockRequested        // queued at one peer or more
	blockReceiving        // being read from a peer into the piece
	blockDone             // in the piece
)

// stealAfter is how long a block waits at a peer before another peer
// with nothing else to do may be asked for it too (besides the endgame,
// when any block still waited for may be asked twice).
const (
	stealAfter = time.Second
	maxAsked   = 2 // peers one block is queued at, at most
)

// blockKey names a block: its piece, and its index in the piece.
type blockKey struct{ piece, block int32 }

// piece is a piece in flight: its blocks arrive into buf.
type piece struct {
	index     int
	buf       []byte
	nblocks   int
	state     []uint8
	asked     []uint8         // peers the block is queued at
	askedAt   []time.Duration // since the download started
	next      int             // blocks from next on were never requested
	retry     []int           // blocks to request again
	done      int
	from      []*Peer // peers that sent its blocks
	solo      bool    // it failed its check with blocks from several peers: one peer sends it whole
	soloPeer  *Peer
	verifying bool
	trusted   bool                 // whole from a web seed, its SHA-1 checked
	cancels   []context.CancelFunc // of web seed requests for it
	written   bool                 // verified and written, waiting for the pieces before it (InOrder)
}

func (pc *piece) blockLen(b int) int {
	return min(BlockSize, len(pc.buf)-b*BlockSize)
}

// download is a Torrent's download in progress. Its fields are under
// t.mu.
type download struct {
	t         *Torrent
	opts      DownloadOptions
	start     time.Time
	active    []*piece // in flight, by index
	byIndex   map[int]*piece
	maxActive int
	want      bitfield // the pieces to fetch
	left      int      // wanted pieces not had yet
	unstarted int      // wanted pieces neither had nor in flight
	cursor    int      // InOrder: the next piece OnPiece may be called with
	free      [][]byte
	pex       chan string // addresses peers' ut_pex messages bring
	verify    chan *piece // whole pieces to check and write
	written   chan *piece // pieces checked and written, for OnPiece
	done      chan struct{}
	err       error
}

// ErrDownloading is returned by Download while another Download of the
// torrent runs.
var ErrDownloading = errors.New("torrent is being downloaded")

// Download fetches the pieces the torrent lacks (those o.Want wants) from
// peers, verifying each piece's SHA-1 in memory before it writes it to
// Storage, and returns when it has them all, when ctx ends, or when
// writing or OnPiece fails. Peers are dialled from o (each again after a pause when its
// connection ends, unless it sent a bad piece); peers that connect to
// the client's Serve take part too. It holds at most Config.InFlight
// bytes of pieces in memory, whatever peers do, and every goroutine it
// starts has ended when it returns, but those of the connections o.Keep
// keeps.
func (t *Torrent) Download(ctx context.Context, o DownloadOptions) error {
	cfg := &t.c.cfg
	t.mu.Lock()
	if t.dl != nil {
		t.mu.Unlock()
		return ErrDownloading
	}
	dl := &download{
		t: t, opts: o, start: time.Now(), byIndex: map[int]*piece{},
		maxActive: int(max(2, cfg.InFlight/t.pieceLen)),
		want:      newBitfield(t.npieces),
		done:      make(chan struct{}),
		pex:       make(chan string, pexMaxCandidates),
	}
	for i := range t.npieces {
		if !t.have.has(i) && (o.Want == nil || o.Want(i)) {
			dl.want.set(i)
			dl.left++
		}
	}
	if dl.left == 0 {
		t.mu.Unlock()
		return nil
	}
	dl.unstarted = dl.left
	dl.verify = make(chan *piece, dl.maxActive)
	dl.written = make(chan *piece, dl.maxActive)
	t.dl = dl
	for p := range t.peers {
		t.interest(p)
	}
	t.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { dl.verifier(ctx) })
	wg.Go(func() { dl.deliverer(ctx) })
	wg.Go(func() { dl.watch(ctx) })
	dl.startWebSeeds(ctx, &wg)
	// The connections it dials run under conns: with o.Keep, they
	// outlive a download that completes.
	conns, dials := ctx, &wg
	var err error
	if o.Keep != nil {
		var keep sync.WaitGroup
		var endConns context.CancelFunc
		conns, endConns = context.WithCancel(o.Keep)
		dials = &keep
		defer func() {
			if err != nil { // else they stay, until o.Keep ends
				endConns()
				keep.Wait()
			}
		}()
	}
	err = dl.dialLoop(ctx, conns, dials)
	if err == nil && o.Keep == nil {
		t.flush(ctx, flushWait)
	}
	cancel()
	wg.Wait()

	t.mu.Lock()
	t.dl = nil
	for p := range t.peers {
		clear(p.reqs)
		if p.amInterested {
			p.amInterested = false
			p.send(appendMsg(nil, pp.NotInterested))
		}
	}
	t.mu.Unlock()
	return err
}

// flushWait bounds how long a complete download waits for its last
// messages (the haves of its last pieces) to be written before it closes
// the connections it dialled.
const flushWait = time.Second

// flush waits, at most d or until ctx ends, until every peer's queued
// messages are written: a seeder then knows the download is complete,
// and counts it so (Stats.SeedsSeen).
func (t *Torrent) flush(ctx context.Context, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		t.mu.Lock()
		queued := false
		for p := range t.peers {
			p.wmu.Lock()
			queued = queued || len(p.out) > 0 || p.writing
			p.wmu.Unlock()
		}
		t.mu.Unlock()
		if !queued {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// finish ends the download with err (nil: complete). t.mu is held.
func (dl *download) finish(err error) {
	select {
	case <-dl.done:
	default:
		dl.err = err
		close(dl.done)
	}
}

// dialLoop dials the download's peers, keeping them connected, until the
// download is done or ctx ends: the caller's addresses first, then those
// of peer exchange with at most half of Config.MaxConns. The connections
// run under conns, in goroutines of dials.
func (dl *download) dialLoop(ctx, conns context.Context, dials *sync.WaitGroup) error {
	t := dl.t
	maxConns := t.c.cfg.MaxConns
	type candidate struct {
		next     time.Time
		failures int
		busy     bool
		pex      bool // from peer exchange only
	}
	known := map[string]*candidate{}
	npex := 0
	add := func(a string) {
		if c := known[a]; c == nil {
			known[a] = &candidate{}
		} else if c.pex {
			c.pex = false
			npex--
		}
	}
	addPEX := func(a string) {
		if known[a] != nil || npex == pexMaxCandidates {
			return
		}
		known[a] = &candidate{pex: true}
		npex++
		if dl.opts.OnPEXPeer != nil {
			dl.opts.OnPEXPeer(a)
		}
	}
	for _, a := range dl.opts.Peers {
		add(a)
	}
	for _, a := range t.c.parkedAddrs(t.ih) {
		add(a) // FetchInfo's connections, taken over by the dial
	}
	type result struct {
		addr   string
		pex    bool
		err    error
		lasted time.Duration
	}
	results := make(chan result, maxConns)
	busy, busyPEX := 0, 0
	more := dl.opts.MorePeers
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		now := time.Now()
		for _, pex := range []bool{false, true} {
			for a, c := range known {
				if busy >= maxConns || pex && busyPEX >= maxConns/2 {
					break
				}
				if c.pex != pex || c.busy || now.Before(c.next) {
					continue
				}
				t.mu.Lock()
				// A peer connected already (it dialled in, or a
				// connection an earlier download kept) takes part
				// as it is: a second connection would split its
				// requests and double its messages.
				skip := t.banned[a] || t.connectedTo(a)
				t.mu.Unlock()
				if skip {
					continue
				}
				c.busy = true
				busy++
				if pex {
					busyPEX++
				}
				dials.Go(func() {
					start := time.Now()
					err := t.dial(conns, a)
					results <- result{a, pex, err, time.Since(start)} // buffered: one place per dial
				})
			}
		}
		select {
		case <-dl.done:
			return dl.err
		case <-ctx.Done():
			return ctx.Err()
		case a, ok := <-more:
			if !ok {
				more = nil
				continue
			}
			add(a)
		case a := <-dl.pex:
			addPEX(a)
		case r := <-results:
			busy--
			if r.pex {
				busyPEX--
			}
			c := known[r.addr]
			c.busy = false
			if r.lasted > time.Minute {
				c.failures = 0
			}
			c.failures++
			c.next = time.Now().Add(min(time.Minute, time.Second<<min(c.failures-1, 6)))
			if c.pex && c.failures >= pexMaxFailures {
				delete(known, r.addr)
				npex--
			}
		case <-tick.C:
		}
	}
}

// connectedTo reports whether a peer of t listens at addr. t.mu is held.
func (t *Torrent) connectedTo(addr string) bool {
	for p := range t.peers {
		if p.listen.IsValid() && p.listen.String() == addr {
			return true
		}
	}
	return false
}

// watch drops peers that hold requests and send nothing for
// Config.SnubTimeout, until ctx ends.
func (dl *download) watch(ctx context.Context) {
	t := dl.t
	snub := t.c.cfg.SnubTimeout
	tick := time.NewTicker(min(time.Second, snub/4))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			t.mu.Lock()
			for p := range t.peers {
				if len(p.reqs) > 0 && !p.inBlock && now.Sub(p.lastBlock) > snub {
					p.conn.Close()
				}
			}
			// Blocks waited for long enough go to idle peers (next).
			t.fillAll()
			t.mu.Unlock()
		}
	}
}

// fill queues requests at p up to its depth. t.mu is held.
func (t *Torrent) fill(p *Peer) {
	dl := t.dl
	if dl == nil || p.choked || !p.amInterested {
		return
	}
	depth := min(p.reqq, t.c.cfg.Requests)
	var msgs []byte
	for len(p.reqs) < depth {
		pc, b, ok := dl.next(p)
		if !ok {
			break
		}
		msgs = appendMsg(msgs, pp.Request, uint32(pc.index), uint32(b*BlockSize), uint32(pc.blockLen(b)))
	}
	if len(msgs) > 0 {
		p.send(msgs)
	}
}

// fillAll fills every peer's queue. t.mu is held.
func (t *Torrent) fillAll() {
	for p := range t.peers {
		t.fill(p)
	}
}

// next chooses the block p is asked for next: one of a piece in flight,
// else the first of a new piece (the rarest among peers, the lowest
// index among equals), else one another peer has been slow to send (any
// one still waited for in the endgame). t.mu is held.
func (dl *download) next(p *Peer) (*piece, int, bool) {
	for _, pc := range dl.active {
		if pc.verifying || !p.hasPiece(pc.index) || !dl.soloFor(pc, p) {
			continue
		}
		if n := len(pc.retry); n > 0 {
			b := pc.retry[n-1]
			pc.retry = pc.retry[:n-1]
			return dl.ask(p, pc, b)
		}
		if pc.next < pc.nblocks {
			pc.next++
			return dl.ask(p, pc, pc.next-1)
		}
	}
	if n := len(dl.active); n < dl.maxActive {
		i := -1
		if h := dl.head(); dl.opts.InOrder && h >= 0 && dl.byIndex[h] == nil && n == dl.maxActive-1 {
			// The last place is kept for the piece OnPiece waits for:
			// pieces after it that verified wait in memory, and would
			// otherwise take every place.
			if p.hasPiece(h) {
				i = h
			}
		} else {
			i = dl.pick(p.hasPiece)
		}
		if i >= 0 {
			pc := dl.startPiece(i)
			pc.next = 1
			return dl.ask(p, pc, 0)
		}
	}
	endgame := dl.unstarted == 0
	now := time.Since(dl.start)
	for _, pc := range dl.active {
		if pc.verifying || pc.solo || !p.hasPiece(pc.index) {
			continue
		}
		for b := range pc.nblocks {
			if pc.state[b] != blockRequested || pc.asked[b] >= maxAsked || (!endgame && now-pc.askedAt[b] < stealAfter) {
				continue
			}
			if _, mine := p.reqs[blockKey{int32(pc.index), int32(b)}]; !mine {
				return dl.ask(p, pc, b)
			}
		}
	}
	return nil, 0, false
}

// soloFor reports whether p may be asked for blocks of pc: any peer may,
// but only one the blocks of a piece that failed with blocks of several.
func (dl *download) soloFor(pc *piece, p *Peer) bool {
	if !pc.solo {
		return true
	}
	if pc.soloPeer == nil {
		pc.soloPeer = p
	}
	return pc.soloPeer == p
}

// ask notes block b of pc as queued at p.
func (dl *download) ask(p *Peer, pc *piece, b int) (*piece, int, bool) {
	pc.state[b] = blockRequested
	pc.asked[b]++
	pc.askedAt[b] = time.Since(dl.start)
	if len(p.reqs) == 0 {
		p.lastBlock = time.Now()
	}
	p.reqs[blockKey{int32(pc.index), int32(b)}] = struct{}{}
	return pc, b, true
}

// unask notes that block b of pc is no longer queued at one peer: with
// no peer left, it is requested again.
func (pc *piece) unask(b int) {
	pc.asked[b]--
	if pc.asked[b] == 0 && pc.state[b] == blockRequested {
		pc.state[b] = blockFree
		pc.retry = append(pc.retry, b)
	}
}

// pick returns the piece to start next at a source that has the pieces
// has says: the one fewest peers have, the lowest index among those; -1
// when it has none the download lacks.
func (dl *download) pick(has func(int) bool) int {
	t := dl.t
	best, fewest := -1, int32(math.MaxInt32)
	for i := range t.npieces {
		if !dl.want.has(i) || t.have.has(i) || dl.byIndex[i] != nil || !has(i) {
			continue
		}
		if a := t.avail[i]; a < fewest {
			best, fewest = i, a
			if a == 0 {
				break // only seeds have it: as rare as it gets
			}
		}
	}
	return best
}

// startPiece puts piece i in flight.
func (dl *download) startPiece(i int) *piece {
	t := dl.t
	size := int(t.pieceSize(i))
	n := (size + BlockSize - 1) / BlockSize
	var buf []byte
	if k := len(dl.free); k > 0 {
		buf, dl.free = dl.free[k-1][:size], dl.free[:k-1]
	} else {
		buf = make([]byte, size, t.pieceLen)
	}
	pc := &piece{index: i, buf: buf, nblocks: n, state: make([]uint8, n), asked: make([]uint8, n), askedAt: make([]time.Duration, n)}
	at, _ := slices.BinarySearchFunc(dl.active, i, func(a *piece, i int) int { return a.index - i })
	dl.active = slices.Insert(dl.active, at, pc)
	dl.byIndex[i] = pc
	dl.unstarted--
	return pc
}

// releaseAll takes back every request queued at p. t.mu is held.
func (dl *download) releaseAll(p *Peer) {
	for k := range p.reqs {
		if pc := dl.byIndex[int(k.piece)]; pc != nil {
			pc.unask(int(k.block))
		}
	}
	clear(p.reqs)
	for _, pc := range dl.active {
		if pc.soloPeer == p {
			pc.soloPeer = nil
		}
	}
}

// rejected takes back a request p rejected (BEP 6). t.mu is held.
func (dl *download) rejected(p *Peer, r request) {
	k := blockKey{int32(r.index), int32(r.begin / BlockSize)}
	if _, ok := p.reqs[k]; !ok {
		return
	}
	delete(p.reqs, k)
	if pc := dl.byIndex[int(k.piece)]; pc != nil {
		pc.unask(int(k.block))
	}
	for q := range dl.t.peers {
		if q != p {
			dl.t.fill(q)
		}
	}
}

// readBlock reads the rest of a piece message of n bytes (index, begin,
// block) into the piece it belongs to, or discards it when no download
// asked p for it.
func (p *Peer) readBlock(n int) error {
	var h [8]byte
	if _, err := io.ReadFull(p.r, h[:]); err != nil {
		return err
	}
	r := request{be32(h[:]), be32(h[4:]), uint32(n - 8)}
	t := p.t
	t.mu.Lock()
	dl := t.dl
	var pc *piece
	var b int
	if dl != nil {
		pc, b = dl.claim(p, r)
	}
	t.mu.Unlock()
	if pc == nil {
		_, err := io.CopyN(io.Discard, p.r, int64(r.length))
		return err
	}
	p.conn.SetReadDeadline(time.Now().Add(t.c.cfg.SnubTimeout))
	_, err := io.ReadFull(p.r, pc.buf[r.begin:r.begin+r.length])
	t.mu.Lock()
	p.inBlock = false
	if t.dl != dl {
		// The download ended while the block came: its pieces and p's
		// requests are no longer the same download's.
		t.mu.Unlock()
		return err
	}
	dl.received(p, pc, b, err == nil)
	if err == nil {
		p.downloaded.Add(int64(r.length))
		t.downloaded.Add(int64(r.length))
		if len(p.reqs) <= min(p.reqq, t.c.cfg.Requests)*3/4 {
			t.fill(p)
		}
	}
	t.mu.Unlock()
	return err
}

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// claim returns the piece and block a block p sent goes into, or nil: p
// was not asked for it, or another peer's copy arrived first. t.mu is
// held.
func (dl *download) claim(p *Peer, r request) (*piece, int) {
	k := blockKey{int32(r.index), int32(r.begin / BlockSize)}
	if _, ok := p.reqs[k]; !ok {
		return nil, 0
	}
	delete(p.reqs, k)
	pc := dl.byIndex[int(r.index)]
	if pc == nil {
		return nil, 0
	}
	b := int(k.block)
	pc.asked[b]--
	if r.begin%BlockSize != 0 || int(r.length) != pc.blockLen(b) || pc.state[b] != blockRequested {
		if pc.asked[b] == 0 && pc.state[b] == blockRequested {
			pc.state[b] = blockFree
			pc.retry = append(pc.retry, b)
		}
		return nil, 0
	}
	pc.state[b] = blockReceiving
	p.inBlock = true
	return pc, b
}

// received notes the end of reading block b of pc from p: in the piece
// when ok, else to be requested again. t.mu is held.
func (dl *download) received(p *Peer, pc *piece, b int, ok bool) {
	if !ok {
		pc.state[b] = blockRequested
		pc.asked[b]++
		pc.unask(b)
		dl.t.fillAll()
		return
	}
	pc.state[b] = blockDone
	pc.done++
	p.lastBlock = time.Now()
	if !slices.Contains(pc.from, p) {
		pc.from = append(pc.from, p)
	}
	dl.cancelOthers(pc, b)
	if pc.done == pc.nblocks {
		pc.verifying = true
		dl.verify <- pc // never blocks: it holds maxActive pieces
	}
}

// cancelOthers tells the peers block b of pc is queued at, now that it
// arrived, not to send it. t.mu is held.
func (dl *download) cancelOthers(pc *piece, b int) {
	if pc.asked[b] == 0 {
		return
	}
	k := blockKey{int32(pc.index), int32(b)}
	for q := range dl.t.peers {
		if _, ok := q.reqs[k]; ok {
			delete(q.reqs, k)
			pc.asked[b]--
			q.send(appendMsg(nil, pp.Cancel, uint32(pc.index), uint32(b*BlockSize), uint32(pc.blockLen(b))))
		}
	}
}

// verifier checks each whole piece and writes it, then hands it to the
// deliverer, until ctx ends: the next piece is checked while OnPiece
// reads the last.
func (dl *download) verifier(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case pc := <-dl.verify:
			if dl.check(pc) {
				dl.written <- pc // never blocks: it holds maxActive pieces
			}
		}
	}
}

// check verifies pc's SHA-1, then writes it and reports true; or drops
// its blocks and bans its sender.
func (dl *download) check(pc *piece) bool {
	t := dl.t
	ok := pc.trusted // a web seed's piece was checked as it came
	if !ok {
		sum := sha1.Sum(pc.buf)
		ok = string(sum[:]) == string(t.pieceHash(pc.index))
	}
	if !ok {
		t.mu.Lock()
		dl.badPiece(pc)
		t.fillAll()
		t.mu.Unlock()
		return false
	}
	if _, err := t.store.WriteAt(pc.buf, int64(pc.index)*t.pieceLen); err != nil {
		t.mu.Lock()
		dl.finish(fmt.Errorf("failed to write piece %d: %w", pc.index, err))
		t.mu.Unlock()
		return false
	}
	return true
}

// deliverer hands each written piece to OnPiece (with InOrder, once the
// pieces before it were) and then counts it as had, until ctx ends.
func (dl *download) deliverer(ctx context.Context) {
	t := dl.t
	for {
		var pc *piece
		select {
		case <-ctx.Done():
			return
		case pc = <-dl.written:
		}
		ready := []*piece{pc}
		if dl.opts.InOrder {
			t.mu.Lock()
			pc.written = true
			ready = dl.ready()
			t.mu.Unlock()
		}
		for _, pc := range ready {
			if dl.opts.OnPiece != nil {
				if err := dl.opts.OnPiece(pc.index, pc.buf); err != nil {
					t.mu.Lock()
					dl.finish(err)
					t.mu.Unlock()
					return
				}
			}
			t.mu.Lock()
			i := slices.Index(dl.active, pc)
			dl.active = slices.Delete(dl.active, i, i+1)
			for _, cancel := range pc.cancels {
				cancel() // web seed requests for it end
			}
			delete(dl.byIndex, pc.index)
			dl.free = append(dl.free, pc.buf)
			t.gotPiece(pc.index)
			dl.left--
			st := t.stats()
			if dl.left == 0 {
				dl.finish(nil)
			} else {
				t.fillAll()
			}
			t.mu.Unlock()
			if dl.opts.Progress != nil {
				dl.opts.Progress(st)
			}
		}
	}
}

// head returns the piece OnPiece waits for with InOrder (-1: none). t.mu
// is held.
func (dl *download) head() int {
	for dl.cursor < dl.t.npieces && !dl.want.has(dl.cursor) {
		dl.cursor++
	}
	if dl.cursor == dl.t.npieces {
		return -1
	}
	return dl.cursor
}

// ready returns the written pieces that come next in index order (InOrder),
// and moves the cursor past them. t.mu is held.
func (dl *download) ready() []*piece {
	var out []*piece
	for h := dl.head(); h >= 0; h = dl.head() {
		pc := dl.byIndex[h]
		if pc == nil || !pc.written {
			break
		}
		out = append(out, pc)
		dl.cursor++
	}
	return out
}

// badPiece handles a piece whose SHA-1 did not verify: a peer that sent
// all its blocks is banned and dropped; a piece of several peers' blocks
// is fetched again whole from one, so that a second failure names its
// sender. t.mu is held.
func (dl *download) badPiece(pc *piece) {
	dl.t.badPieces++
	if len(pc.from) == 1 {
		q := pc.from[0]
		dl.t.banned[q.addr] = true
		q.conn.Close()
	} else {
		pc.solo = true
	}
	pc.soloPeer = nil
	for b := range pc.nblocks {
		pc.state[b], pc.asked[b] = blockFree, 0
	}
	pc.next, pc.retry, pc.done, pc.from, pc.verifying = 0, nil, 0, nil, false
}

// Banned returns the addresses of the peers banned for sending a bad
// piece: they are not dialled again, nor accepted from the same address
// (an address that dialled in is its address and port, so this holds
// less well for them).
func (t *Torrent) Banned() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Sorted(maps.Keys(t.banned))
}

// BadPieces returns how many pieces failed their SHA-1 check in the
// torrent's downloads.
func (t *Torrent) BadPieces() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.badPieces
}
