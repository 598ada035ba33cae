package transfer

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/anacrolix/torrent"

	"github.com/relay-sh/relay/record"
)

// What a Client learns about reaching peers, so that a publisher that
// waited in vain can say whether nobody came or they came and no
// connection could be made either way (both sides behind NAT).

// Bounds of that bookkeeping: the peers remembered per bundle, and the
// addresses whose last dial is remembered over all bundles.
const (
	maxReachPeers = 64
	maxDialNotes  = 4096
)

// Seeded bundles look up their peers in the DHT too, and dial them: a peer
// that cannot be reached (a fetcher or seeder behind NAT) must be the one
// that is dialled. A bundle just seeded looks again after a quarter of the
// time it has been seeded (from seedLookupMin up to seedLookupMax), so a
// peer that announces itself T after seeding began is dialled by about
// 1.25 T; the lookups of all seeded bundles of a Client share a budget of
// seedLookupRate a second. Behind NAT (the DHT node is not reachable)
// nobody can dial in, so a seeder finds every new fetcher itself: its
// lookups are at most seedLookupNATMax apart.
const (
	seedLookupMin    = time.Second
	seedLookupMax    = 5 * time.Minute
	seedLookupNATMax = 15 * time.Second
	seedLookupRate   = 1
	seedLookupBurst  = 4
)

// Behind NAT a new peer waits for the seeder's next lookup (a fetch of a
// tiny bundle took 7 times as long as with no NAT: it waited for a second
// where the transfer takes a tenth). While peers are likely to come, in
// the natEagerFor after a bundle is first seeded (a release just
// published: watchers and CI jobs fetch it now) and after a lookup named
// a peer not seen before (they come in waves), a seeder behind NAT asks
// the closest nodes of its last lookup again: natAskNodes of them every
// natAsk, in turn, so each is asked once a natRound (each stores every
// peer's announce, so any of them names a new peer). It does so only
// while no peer holding the whole bundle is connected to it: one that is
// (the seeder it fetched from) is where new peers go, and a fleet of
// watchers behind NAT, each connected to its seeder, would otherwise ask
// the same nodes many times a second each. All bundles of a Client share
// natQueryRate such queries a second, and each of those nodes gets at
// most 1/natRound queries a second from a bundle (libtorrent blocks a
// sender above 5).
const (
	natRound     = 250 * time.Millisecond
	natAskNodes  = 2
	natAsk       = natRound * natAskNodes / 8 // of the K=8 closest
	natEagerFor  = 30 * time.Second
	natQueryRate = 64
)

// natEager reports whether a seeded bundle asks for new peers every
// natAsk at now: since is when it was first seeded, eagerUntil the end of
// the wave its last new peer began, reachable whether others can dial
// this host, and seeded whether a peer with the whole bundle is
// connected.
func natEager(now, since, eagerUntil time.Time, reachable, seeded bool) bool {
	return !reachable && !seeded && (now.Sub(since) < natEagerFor || now.Before(eagerUntil))
}

// seedConnected reports whether a peer holding the whole bundle ih is
// connected.
func (c *Client) seedConnected(ih record.Infohash) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, p := range c.peerBits {
		if k.ih == ih && p.seed {
			return true
		}
	}
	return false
}

// seedLookupWait is how long a bundle seeded for age waits before its next
// lookup of peers; reachable says whether others can dial this host.
func seedLookupWait(age time.Duration, reachable bool) time.Duration {
	most := seedLookupMax
	if !reachable {
		most = seedLookupNATMax
	}
	return min(max(age/4, seedLookupMin), most)
}

// ReachState is what became of the connection to a peer.
type ReachState int

// The states of a peer, from the least reached.
const (
	// NotTried: the peer was known but never dialled (the connection
	// limits were full, or it was learnt just before the end).
	NotTried ReachState = iota
	// Dialing: a dial started and has not ended yet (an address that
	// drops connection attempts, like a NAT, gives no answer for the
	// dial timeout, 20 s).
	Dialing
	// DialFailed: every dial failed; PeerReach.Err says why.
	DialFailed
	// Dialed: a connection was made but the BitTorrent handshake did not
	// complete.
	Dialed
	// Connected: a BitTorrent connection for the bundle was made.
	Connected
)

func (s ReachState) String() string {
	switch s {
	case Dialing:
		return "dialled, no answer yet"
	case DialFailed:
		return "dial failed"
	case Dialed:
		return "dialled, no handshake"
	case Connected:
		return "connected"
	}
	return "never tried"
}

// PeerReach is a peer of a bundle and how far this client reached it.
type PeerReach struct {
	Addr netip.AddrPort
	// Incoming is true for a peer that connected to this client; the
	// others were named by the DHT (or given) and dialled from here.
	Incoming bool
	State    ReachState
	// Err is the last dial error of a peer in state DialFailed.
	Err error
}

// Reach says which peers a bundle knew and whether they were reached: at
// most 64 named peers, the most reached first, and how many more were
// named. ok is false when the client does not hold the bundle.
func (c *Client) Reach(ih record.Infohash) (peers []PeerReach, more int, ok bool) {
	if c.w != nil {
		return c.w.reach(ih)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	a := c.bundles[ih]
	if a == nil {
		return nil, 0, false
	}
	peers, more = c.reachOf(&a.reach)
	return peers, more, true
}

// reachOf returns the peers of book with what the client's dials learnt
// of them, sorted as Reach says, and how many more were named. c.mu is
// held.
func (c *Client) reachOf(book *reachBook) (peers []PeerReach, more int) {
	for ap, r := range book.peers {
		if !r.Incoming {
			if d, ok := c.dials.notes[ap]; ok {
				r.State, r.Err = max(r.State, d.state), d.err
				if r.State != DialFailed {
					r.Err = nil
				}
			}
		}
		peers = append(peers, r)
	}
	slices.SortFunc(peers, func(x, y PeerReach) int {
		if x.State != y.State {
			return int(y.State) - int(x.State)
		}
		return x.Addr.Compare(y.Addr)
	})
	return peers, book.more
}

// reachBook is a bundle's peers and how far each was reached, at most
// maxReachPeers of them, and how many more were left out. Its owner's
// lock guards it.
type reachBook struct {
	peers map[netip.AddrPort]PeerReach
	more  int
}

// notePeers remembers peers named for a bundle and returns how many it
// did not know (of those it has room to remember).
func (book *reachBook) notePeers(ps []netip.AddrPort) (added int) {
	for _, ap := range ps {
		if _, ok := book.peers[ap]; !ok && len(book.peers) < maxReachPeers {
			added++
		}
		book.note(PeerReach{Addr: ap})
	}
	return added
}

// note remembers r, keeping the furthest state.
func (book *reachBook) note(r PeerReach) {
	if book.peers == nil {
		book.peers = make(map[netip.AddrPort]PeerReach)
	}
	old, ok := book.peers[r.Addr]
	if !ok && len(book.peers) >= maxReachPeers {
		book.more++
		return
	}
	if ok && old.State > r.State {
		return
	}
	if ok && old.Incoming {
		r.Incoming = true
	}
	book.peers[r.Addr] = r
}

// onConnReached notes a BitTorrent connection to a bundle's peer. It runs
// with the torrent client locked.
func (c *Client) onConnReached(pc *torrent.PeerConn) {
	k, ok := keyOf(pc)
	if !ok {
		return
	}
	ap := connAddr(pc)
	if !ap.IsValid() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if a := c.bundles[k.ih]; a != nil {
		a.reach.note(PeerReach{Addr: ap, Incoming: pc.Discovery == torrent.PeerSourceIncoming, State: Connected})
	}
}

// dialNote is the last outcome of dialling an address.
type dialNote struct {
	state ReachState
	err   error
}

// dialNotes remembers the outcome of dials by address, at most
// maxDialNotes of them. Guarded by Client.mu.
type dialNotes struct {
	notes map[netip.AddrPort]dialNote
}

// noteDial records the state of a dial of addr: Dialing as it starts,
// then its outcome. A dial cancelled because another dialer connected
// first, or because the client closed, says nothing about the peer.
func (c *Client) noteDial(addr string, state ReachState, err error) {
	ap, perr := netip.ParseAddrPort(addr)
	if perr != nil || errors.Is(err, context.Canceled) {
		return
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	n := dialNote{state: state, err: err}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dials.notes == nil {
		c.dials.notes = make(map[netip.AddrPort]dialNote)
	}
	if old, ok := c.dials.notes[ap]; ok && old.state > n.state {
		return
	}
	if _, ok := c.dials.notes[ap]; !ok && len(c.dials.notes) >= maxDialNotes {
		for k := range c.dials.notes { // forget any one
			delete(c.dials.notes, k)
			break
		}
	}
	c.dials.notes[ap] = n
}

// notingDialer is a dialer of the torrent client that tells the Client
// how each dial went.
type notingDialer struct {
	torrent.Dialer
	c *Client
}

func (d notingDialer) Dial(ctx context.Context, addr string) (net.Conn, error) {
	d.c.noteDial(addr, Dialing, nil)
	conn, err := d.Dialer.Dial(ctx, addr)
	if err != nil {
		d.c.noteDial(addr, DialFailed, err)
	} else {
		d.c.noteDial(addr, Dialed, nil)
	}
	return conn, err
}

// noteDials replaces the torrent client's dialers (its listening sockets,
// which it was told not to dial with) by ones that note each dial.
func (c *Client) noteDials() {
	for _, l := range c.cl.Listeners() {
		if d, ok := l.(torrent.Dialer); ok {
			c.cl.AddDialer(notingDialer{Dialer: d, c: c})
		}
	}
}
