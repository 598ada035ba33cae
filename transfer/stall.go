package transfer

import (
	"net/netip"
	"slices"
	"time"

	"github.com/anacrolix/torrent"
	pp "github.com/anacrolix/torrent/peer_protocol"

	"github.com/relay-sh/relay/record"
)

// A peer's request queue, and what relay does so that no peer's limits
// can stall a fetch.
//
// The torrent library keeps up to the peer's advertised limit ("reqq" in
// its extended handshake) of requests queued at a peer, and asks for more
// only once none is left. When the peer rejects one (BEP 6), the library
// adds no request in answer, and waits for the peer to unchoke it again,
// which a peer that never choked it never does. So a peer whose last
// outstanding request is rejected gets no request again: Transmission 3.00
// advertises reqq=512 and rejects a request once 511 are queued, and a
// fetch from it alone stopped at 16,756,522 of 20,000,554 bytes until its
// deadline. Three things keep that from happening:
//
//   - the queue kept at a peer is one below its advertised limit, as a
//     limit that counts the request at hand (Transmission's) needs;
//   - a watchdog (unstall) closes a connection to a peer that unchoked us
//     and has pieces the fetch wants but sent no block for stallTime, or
//     whose last answer was a reject that left nothing queued there for
//     rejectStall, and dials the peer again: a new connection starts with
//     a fresh queue, so whatever the peer's limits, or whatever else stops
//     the library from asking, a fetch goes on;
//   - when it does so for rejects, the queue kept at that peer, on its
//     next connections, is what it took before its rejects began
//     (learnLimit), so that it stalls once, not at every queue.

// stallTime is how long a peer that unchoked a fetch and has pieces it
// wants may send no block before its connection is made again.
const stallTime = 3 * time.Second

// rejectStall is how long a connection whose last answer was a reject,
// with nothing queued since, may stay so: the torrent library will not
// ask that peer again.
const rejectStall = time.Second

// rejectBurst is how close rejects must come to count as one burst, the
// answer to one queue of requests.
const rejectBurst = 500 * time.Millisecond

// queueLimit is the queue relay keeps at a peer that advertises reqq: one
// below it.
func queueLimit(reqq int) int {
	return max(1, reqq-1)
}

// withPeer calls fn with c.mu held and the state kept for pc, created if
// need be (then capSeeds looks at the bundle's peers again). It does
// nothing while pc has no torrent.
func (c *Client) withPeer(pc *torrent.PeerConn, fn func(peerKey, *peerPieces)) {
	k, ok := keyOf(pc)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.peerBits[k]
	if p == nil {
		p = &peerPieces{choked: true}
		c.peerBits[k] = p
		defer c.capSeeds(k.ih)
	}
	fn(k, p)
}

// onSentRequest counts a request sent to a peer; it runs with the torrent
// client locked.
func (c *Client) onSentRequest(ev torrent.PeerRequestEvent) {
	if pc, ok := ev.Peer.TryAsPeerConn(); ok {
		c.withPeer(pc, func(_ peerKey, p *peerPieces) {
			p.queued++
			p.peak = max(p.peak, p.queued)
		})
	}
}

// onFlow follows a peer's choking of us and its rejects; it runs, like
// onMessage, with the torrent client locked.
func (c *Client) onFlow(pc *torrent.PeerConn, msg *pp.Message) {
	c.withPeer(pc, func(_ peerKey, p *peerPieces) { p.flow(msg.Type) })
}

// flow notes a choke, unchoke or reject of the peer; c.mu is held.
func (p *peerPieces) flow(typ pp.MessageType) {
	now := time.Now()
	switch typ {
	case pp.Choke:
		p.choked = true
	case pp.Unchoke:
		if p.choked {
			p.choked, p.unchoked = false, now
		}
	case pp.Reject:
		if !p.choked && now.Sub(p.lastReject) >= rejectBurst {
			// The first reject of a burst: of the most requests queued
			// at the peer since the last burst, those still unanswered
			// are (with a peer that answers in order) the ones it
			// rejects; it took the others.
			p.took = max(1, p.peak-p.queued)
			p.peak = 0
		}
		p.lastReject = now
		p.queued = max(0, p.queued-1)
	}
}

// learnLimit keeps n as the queue peer id takes in bundle ih, for its
// next connections; c.mu is held.
func (c *Client) learnLimit(ih record.Infohash, id torrent.PeerID, n int) {
	m := c.reqLimits[ih]
	if m == nil {
		m = make(map[torrent.PeerID]int)
		c.reqLimits[ih] = m
	}
	if old, ok := m[id]; ok || len(m) < MaxCompletePeers {
		if ok {
			n = min(old, n)
		}
		m[id] = n
	}
}

// learntLimit returns the queue learnLimit kept for a peer, or 0; c.mu
// is held.
func (c *Client) learntLimit(ih record.Infohash, id torrent.PeerID) int {
	return c.reqLimits[ih][id]
}

// stalled is a connection unstall found stalled.
type stalled struct {
	t  *torrent.Torrent
	pc *torrent.PeerConn
}

// unstall closes the connections of fetched bundles that stalled (see
// stallTime, rejectStall) and dials their peers again. It runs from
// background.
func (c *Client) unstall() {
	c.dialAgain()
	now := time.Now()
	type cand struct {
		k   peerKey
		all bool
		has []uint32
	}
	var cands []cand
	tors := make(map[peerKey]*torrent.Torrent)
	c.mu.Lock()
	for k, p := range c.peerBits {
		a := c.bundles[k.ih]
		if a == nil || a.fetches == 0 || p.choked {
			continue
		}
		rejected := p.queued == 0 && p.lastReject.After(p.lastBlock) && now.Sub(p.lastReject) >= rejectStall
		idle := now.Sub(p.unchoked) >= stallTime && now.Sub(p.lastBlock) >= stallTime
		if !rejected && !idle {
			continue
		}
		if rejected && p.took > 0 {
			c.learnLimit(k.ih, k.pc.PeerID, p.took)
		}
		cd := cand{k: k, all: p.all}
		if !p.all {
			cd.has = p.have.ToArray()
		}
		cands = append(cands, cd)
		tors[k] = a.t
	}
	c.mu.Unlock()
	var kick []stalled
	for _, cd := range cands {
		t := tors[cd.k]
		if t.Info() == nil {
			continue
		}
		wants := func(i int) bool {
			st := t.PieceState(i)
			return !st.Complete && st.Priority != torrent.PiecePriorityNone
		}
		found := false
		if cd.all {
			for i := 0; i < t.NumPieces() && !found; i++ {
				found = wants(i)
			}
		}
		for _, i := range cd.has {
			if found || int(i) >= t.NumPieces() {
				break
			}
			found = wants(int(i))
		}
		if found {
			kick = append(kick, stalled{t, cd.k.pc})
		}
	}
	for _, s := range kick {
		c.redial(s)
	}
}

// redial closes a stalled connection and dials its peer again.
func (c *Client) redial(s stalled) {
	addrs := redialAddrs(s.pc)
	c.log.Debug("peer sent nothing while unchoked: connecting again", "peer", addrs, "infohash", s.t.InfoHash())
	closeConn(s.pc) // a stalled bundle's info is known
	c.redials = append(c.redials, s)
}

// dialAgain dials the peers of the connections redial closed, once the
// torrent library has let go of them: while it holds a connection to an
// address, it does not dial that address.
func (c *Client) dialAgain() {
	pending := c.redials[:0]
	for _, s := range c.redials {
		if slices.Contains(s.t.PeerConns(), s.pc) {
			pending = append(pending, s)
			continue
		}
		c.addPeers(s.t, redialAddrs(s.pc), torrent.PeerSourceDirect)
	}
	clear(c.redials[len(pending):])
	c.redials = pending
}

// redialAddrs returns where a peer may be dialled again: the address of
// the connection (its listening address when this client dialled it) and
// the listening port it advertised.
func redialAddrs(pc *torrent.PeerConn) []netip.AddrPort {
	ap := connAddr(pc)
	if !ap.IsValid() {
		return nil
	}
	out := []netip.AddrPort{ap}
	if lp := pc.PeerListenPort; lp > 0 && lp < 1<<16 && int(ap.Port()) != lp {
		out = append(out, netip.AddrPortFrom(ap.Addr(), uint16(lp)))
	}
	return out
}
