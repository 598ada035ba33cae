package peerwire

import (
	"math"
	"time"

	pp "github.com/anacrolix/torrent/peer_protocol"
)

// Initial seeding (TorrentOptions.InitialSeeding) is BEP 16's idea, the
// "super-seeding" of other clients: a torrent's first seed hides that it
// has every piece, and offers each peer one piece at a time, announced
// with a have. A peer is offered its next piece once it has the last one
// and another peer announced that piece too (it passed it on), so that
// each piece leaves the seed about once while the peers copy pieces
// among themselves.
//
// The seed answers requests for a peer's offered piece only, each byte
// of it once: a peer gets no more of the seed than one piece per offer,
// however it asks. An offer goes to the piece the seed uploaded fewest
// copies of (counting the offers not yet downloaded), the one fewest
// connected peers announce among those: a round of every piece before a
// second copy of any, which no peer can change by what it claims, and
// the rarest first within a round. A peer's have counts as passing a
// piece on only when the seed never offered that piece to it, and only
// from a peer that claimed no piece the seed had not uploaded whole yet
// (no other peer can have had it then: a liar). A peer that has its
// offered piece is offered the next one without waiting when no other
// peer connected lacks the piece (a lone peer, the last one), when it
// got the piece from others, or after PassOnWait. An offer the peer is
// not interested in for declineWait is replaced by another; a request
// for the declined piece, before any byte of the other was sent, makes
// it the offer again.
//
// Initial seeding does not end when every piece is out: the seed keeps
// offering the rarest pieces one at a time to whoever lacks them, so
// that it never uploads more than one piece per peer per passing-on.

// defaultPassOnWait is TorrentOptions.PassOnWait's default.
const defaultPassOnWait = 10 * time.Second

// declineWait is how long a peer may stay not interested in its offer
// before the seed takes it for declined and offers another piece: a
// client that fetches some files only (relay's own fetches the pieces of
// relay.json first, then a platform's files) does not want every piece.
const declineWait = 2 * time.Second

// initialSeeding is a torrent's state in initial seeding. Its fields are
// under the torrent's mu.
type initialSeeding struct {
	t    *Torrent
	wait time.Duration
	// sent counts by piece the bytes uploaded of it.
	sent []int64
	// pending counts by piece the peers it is offered to that do not have
	// it yet; offers the peers whose current offer it is.
	pending, offers []int32
	peers           map[*Peer]*offer
	// open are the pieces of TorrentOptions.OpenPieces, told of to every
	// peer and served to any.
	open []int
	// isOpen says by piece whether it is open.
	isOpen bitfield
	// start is where the search for the next offer starts, moving on
	// with each offer, so that pieces equal by every count spread.
	start int
}

// offer is a peer's state in initial seeding.
type offer struct {
	piece int  // offered now, -1: none
	sent  int  // bytes of piece uploaded to the peer
	had   bool // the peer announced piece
	// passed: a peer other than this one announced piece since it was
	// offered.
	passed bool
	// offered are the pieces ever offered to the peer; its haves of those
	// do not count as passing them on.
	offered bitfield
	// declined are the pieces the peer was offered and did not want;
	// they are offered again only when it lacks no other.
	declined bitfield
	// liar: the peer claimed a piece the seed had not uploaded whole; its
	// haves never count as passing a piece on.
	liar bool
	// heard is when the peer joined or last announced a piece: one that
	// announced nothing for PassOnWait is not waited for.
	heard time.Time
	timer *time.Timer // declineWait after the offer, PassOnWait after had
}

// newInitialSeeding returns t's initial-seeding state.
func newInitialSeeding(t *Torrent, o TorrentOptions) *initialSeeding {
	ss := &initialSeeding{
		t: t, wait: o.PassOnWait, sent: make([]int64, t.npieces),
		pending: make([]int32, t.npieces), offers: make([]int32, t.npieces),
		peers: map[*Peer]*offer{}, isOpen: newBitfield(t.npieces),
	}
	if ss.wait <= 0 {
		ss.wait = defaultPassOnWait
	}
	if o.OpenPieces != nil {
		for i := range t.npieces {
			if o.OpenPieces(i) {
				ss.open = append(ss.open, i)
				ss.isOpen.set(i)
			}
		}
	}
	return ss
}

// join takes a new peer into initial seeding, if the torrent serves so
// and has every piece, and reports whether it did: it queues what the
// seed announces first instead of its pieces (have none, to a peer that
// speaks BEP 6; else nothing) and the peer's first offer. t.mu is held.
func (t *Torrent) joinInitialSeeding(p *Peer) bool {
	ss := t.ss
	if ss == nil || t.nhave < t.npieces {
		return false
	}
	switch {
	case len(ss.open) > 0:
		p.out = appendBitfield(p.out, ss.isOpen)
	case p.fast:
		p.out = appendMsg(p.out, pp.HaveNone)
	}
	ss.peers[p] = &offer{piece: -1, offered: newBitfield(t.npieces), declined: newBitfield(t.npieces), heard: time.Now()}
	ss.next(p)
	return true
}

// leave forgets a peer that is gone. t.mu is held.
func (ss *initialSeeding) leave(p *Peer) {
	o := ss.peers[p]
	if o == nil {
		return
	}
	ss.withdraw(o)
	delete(ss.peers, p)
	// Peers that wait for their piece to be passed on may have waited
	// for this one.
	for q, qo := range ss.peers {
		if qo.had {
			ss.settle(q, qo)
		}
	}
}

// withdraw ends o's current offer. t.mu is held.
func (ss *initialSeeding) withdraw(o *offer) {
	if o.timer != nil {
		o.timer.Stop()
		o.timer = nil
	}
	if o.piece < 0 {
		return
	}
	ss.offers[o.piece]--
	if !o.had {
		ss.pending[o.piece]--
	}
	o.piece = -1
}

// next offers p the next piece, if it lacks any, and unchokes or chokes
// it for it. t.mu is held.
func (ss *initialSeeding) next(p *Peer) {
	o := ss.peers[p]
	ss.withdraw(o)
	if i := ss.pick(p); i >= 0 {
		*o = offer{piece: i, offered: o.offered, declined: o.declined, liar: o.liar, heard: o.heard}
		o.offered.set(i)
		ss.offers[i]++
		ss.pending[i]++
		ss.start = (i + 1) % ss.t.npieces
		p.send(appendMsg(nil, pp.Have, uint32(i)))
		ss.watchDecline(p, o)
	}
	ss.slot(p)
}

// watchDecline offers p another piece when it is not interested in its
// offer declineWait after it was made, and looks again every
// declineWait until p downloads some of it or has it (a peer fetching
// an open piece is interested, whatever it thinks of its offer). t.mu is
// held.
func (ss *initialSeeding) watchDecline(p *Peer, o *offer) {
	t, i := ss.t, o.piece
	o.timer = time.AfterFunc(declineWait, func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if ss.peers[p] != o || o.piece != i || o.had || o.sent > 0 {
			return
		}
		if p.interested {
			ss.watchDecline(p, o)
			return
		}
		o.declined.set(i)
		ss.next(p)
	})
}

// pick returns the piece to offer p: of those it lacks, the one the seed
// uploaded fewest copies of, counting offers not yet downloaded; among
// those the one fewest peers announce; -1 when p lacks none. t.mu is
// held.
func (ss *initialSeeding) pick(p *Peer) int {
	if i := ss.pickFrom(p, true); i >= 0 {
		return i
	}
	// It declined every piece it lacks: they are offered again.
	clear(ss.peers[p].declined)
	return ss.pickFrom(p, false)
}

// pickFrom is pick among the pieces that are not open, and (declined
// true) not declined by p. t.mu is held.
func (ss *initialSeeding) pickFrom(p *Peer, declined bool) int {
	t := ss.t
	o := ss.peers[p]
	best := -1
	var bestCopies int64 = math.MaxInt64
	var bestAvail int32 = math.MaxInt32
	for k := range t.npieces {
		i := (ss.start + k) % t.npieces
		if p.hasPiece(i) || ss.isOpen.has(i) || declined && o.declined.has(i) {
			continue
		}
		copies := ss.sent[i]/t.pieceSize(i) + int64(ss.pending[i])
		if copies < bestCopies || copies == bestCopies && t.avail[i] < bestAvail {
			best, bestCopies, bestAvail = i, copies, t.avail[i]
		}
	}
	return best
}

// slot unchokes p when it has an offer to download, and chokes it when
// it has none, so that its upload slot serves a peer that has. t.mu is
// held.
func (ss *initialSeeding) slot(p *Peer) {
	if ss.downloading(p) {
		ss.t.considerUnchoke(p)
	} else if !p.amChoking {
		ss.t.choke(p)
	}
}

// downloading reports whether p may download from the seed: it is not
// in initial seeding, or it has an offer it lacks of which bytes are
// left to send. t.mu is held.
func (ss *initialSeeding) downloading(p *Peer) bool {
	o := ss.peers[p]
	if o == nil || o.piece >= 0 && !o.had && int64(o.sent) < ss.t.pieceSize(o.piece) {
		return true
	}
	for _, i := range ss.open {
		if !p.hasPiece(i) {
			return true
		}
	}
	return false
}

// mayUnchoke reports whether p may take an upload slot. t.mu is held.
func (t *Torrent) mayUnchoke(p *Peer) bool { return t.ss == nil || t.ss.downloading(p) }

// offered reports whether p may request blocks of piece i: in initial
// seeding only of the piece it is offered, and of the open pieces. A
// request for a piece p declined, while nothing of its offer was sent
// yet, makes that piece its offer: the peer was told the seed has it,
// and wants it now. t.mu is held.
func (t *Torrent) offered(p *Peer, i int) bool {
	if t.ss == nil {
		return true
	}
	o := t.ss.peers[p]
	if o == nil || o.piece == i || t.ss.isOpen.has(i) {
		return true
	}
	if !o.declined.has(i) || o.sent > 0 || o.had {
		return false
	}
	ss := t.ss
	ss.withdraw(o)
	o.declined[i>>3] &^= 0x80 >> (i & 7)
	o.piece = i
	ss.offers[i]++
	ss.pending[i]++
	return true
}

// takeUpload reports whether the seed sends p the block r now, and
// counts it: in initial seeding only while the bytes sent of p's offer
// stay within the piece.
func (t *Torrent) takeUpload(p *Peer, r request) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ss == nil {
		return true
	}
	o := t.ss.peers[p]
	if o == nil {
		return true
	}
	if t.ss.isOpen.has(int(r.index)) {
		t.ss.sent[r.index] += int64(r.length)
		return true
	}
	if o.piece != int(r.index) || int64(o.sent)+int64(r.length) > t.pieceSize(o.piece) {
		return false
	}
	o.sent += int(r.length)
	t.ss.sent[o.piece] += int64(r.length)
	if int64(o.sent) == t.pieceSize(o.piece) {
		if t.ss.othersLack(p, o.piece) {
			t.ss.slot(p)
		} else {
			// No one to pass it on to: the next piece now, before the
			// peer could run out of requests. (libtorrent, told of the
			// last piece it lacks after it stopped being interested,
			// took the seed for a seed and never asked for that piece.)
			t.ss.next(p)
		}
	}
	return true
}

// has handles p's announcing piece i: its offer may be done, and it may
// have passed another peer's offer on. t.mu is held.
func (ss *initialSeeding) has(p *Peer, i int) {
	t := ss.t
	o := ss.peers[p]
	if o != nil {
		o.heard = time.Now()
		if ss.sent[i] < t.pieceSize(i) {
			o.liar = true
		}
	}
	if o != nil && o.piece == i && !o.had {
		o.had = true
		if o.timer != nil {
			o.timer.Stop() // watchDecline's
			o.timer = nil
		}
		ss.pending[i]--
		ss.settle(p, o)
	}
	if ss.offers[i] == 0 || o != nil && (o.liar || o.offered.has(i)) {
		return
	}
	for q, qo := range ss.peers {
		if q != p && qo.piece == i && !qo.passed {
			qo.passed = true
			ss.settle(q, qo)
		}
	}
}

// settle offers p its next piece once it has its offer and passed it on
// (or need not), else waits PassOnWait for that. t.mu is held.
func (ss *initialSeeding) settle(p *Peer, o *offer) {
	if !o.had {
		return
	}
	i := o.piece
	if o.passed || int64(o.sent) < ss.t.pieceSize(i) || !ss.othersLack(p, i) {
		ss.next(p)
		return
	}
	ss.slot(p)
	if o.timer == nil {
		t := ss.t
		o.timer = time.AfterFunc(ss.wait, func() {
			t.mu.Lock()
			defer t.mu.Unlock()
			if ss.peers[p] == o && o.piece == i {
				o.timer = nil
				ss.next(p)
			}
		})
	}
}

// claims handles p's bitfield bf: a peer that claims a piece the seed
// did not upload whole is a liar, before any of its claims counts as
// passing a piece on. t.mu is held.
func (ss *initialSeeding) claims(p *Peer, bf bitfield) {
	o := ss.peers[p]
	if o == nil {
		return
	}
	for i := range ss.t.npieces {
		if bf.has(i) && ss.sent[i] < ss.t.pieceSize(i) {
			o.liar = true
			return
		}
	}
}

// othersLack reports whether a peer connected besides p lacks piece i
// and takes part: it is not in initial seeding, or it joined or
// announced a piece within PassOnWait. t.mu is held.
func (ss *initialSeeding) othersLack(p *Peer, i int) bool {
	now := time.Now()
	for q := range ss.t.peers {
		if q == p || q.hasPiece(i) {
			continue
		}
		if o := ss.peers[q]; o == nil || now.Sub(o.heard) < ss.wait {
			return true
		}
	}
	return false
}
