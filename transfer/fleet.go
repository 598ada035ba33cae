package transfer

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
)

// A fleet of watchers of one key serves each release it installs (Serve),
// and learns of a new one from its key's swarm (relay_record). If each of
// them announced every bundle it serves, and looked up its peers, as a
// seeder does, the DHT nodes closest to each bundle would take a fleet's
// worth of lookups every few minutes: far more than the fleet's own checks
// of the key, which the swarm's news lets it put off. A fleet needs few
// entry points in the DHT: a newcomer that finds one is told of the rest
// by peer exchange and relay_record. So a bundle served as one of a fleet
// is quiet:
//
//   - it is announced only by the announceShare peers of the swarm, among
//     this client and the relay peers of the key it is connected to, whose
//     peer IDs are closest to the bundle's infohash (each counts only
//     those it knows, so a fleet whose members each know P others has
//     about announceShare/(P+1) of them announcing), and only by a client
//     others can dial: a peer behind NAT announces an address nobody
//     reaches;
//   - its peers are not looked up: those that fetch it dial the announced
//     ones, the publisher's seeders and the peers they learn of; a fetch
//     of a bundle served so (its files changed on disk) looks its peers up
//     only when no peer sent it a block for swarmWait.
//
// A fetch is announced and looks up its peers as any BitTorrent client's:
// the fetchers of a new release must find each other within seconds, and
// peer exchange tells of new peers only every minute. Fetches told of
// their release by the swarm that neither announced nor looked up (tried
// first) left 100 watchers 98 s until half of them installed it in
// BenchmarkFleet, where 50 took 18 s, most likely because they found each
// other only by peer exchange. A fetch told of its
// release by the swarm (FetchRequest.Swarm) starts with the relay peers of
// its key it is connected to besides.
//
// A client alone with its bundle (no relay peer of its key connected)
// ranks first among itself, and announces it as a seeder does.
const (
	announceShare = 2
	swarmWait     = 3 * time.Second
)

// Serve serves bundle ih as Seed does, as one of a fleet that holds it:
// quietly (see announceShare). A bundle seeded by Seed stays seeded as
// Seed does; Seed on a served bundle makes it seeded.
func (c *Client) Serve(ctx context.Context, ih record.Infohash) (*Bundle, error) {
	return c.seed(ctx, ih, true)
}

// chosenAnnouncer reports whether this client is among the announceShare
// relay peers of key it knows of (itself and those connected) whose peer
// IDs are closest to ih. With no key (not known yet), it is.
func (c *Client) chosenAnnouncer(key signer.PublicKey, ih record.Infohash) bool {
	if key.IsZero() {
		return true
	}
	self := c.peerID()
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := [][20]byte{self}
	for _, rp := range c.recordPeers {
		if rp.key == key && !slices.Contains(ids, rp.id) {
			ids = append(ids, rp.id)
		}
	}
	closer := 0
	for _, id := range ids[1:] {
		if xorLess(id, self, ih) {
			closer++
		}
	}
	return closer < announceShare
}

// peerID is the client's BitTorrent peer ID, on either engine.
func (c *Client) peerID() [20]byte {
	if c.w != nil {
		return c.w.pw.PeerID()
	}
	return c.cl.PeerID()
}

// xorLess reports whether peer ID a is closer to ih than b.
func xorLess(a, b [20]byte, ih record.Infohash) bool {
	var x, y [20]byte
	for i := range ih {
		x[i], y[i] = a[i]^ih[i], b[i]^ih[i]
	}
	return bytes.Compare(x[:], y[:]) < 0
}

// swarmAddrs returns the addresses of the relay peers of key this client
// is connected to, as they can be dialled: a peer that dialled in is
// dialled at the port it said it listens on.
func (c *Client) swarmAddrs(key signer.PublicKey) []netip.AddrPort {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []netip.AddrPort
	for _, rp := range c.recordPeers {
		if rp.key == key && rp.addr.IsValid() && !slices.Contains(out, rp.addr) {
			out = append(out, rp.addr)
		}
	}
	return out
}

// starved reports whether a fetch started at since has had no block from
// any peer of bundle ih for swarmWait (the torrent library's engine).
func (c *Client) starved(ih record.Infohash, since time.Time) bool {
	now := time.Now()
	if now.Sub(since) < swarmWait {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, p := range c.peerBits {
		if k.ih == ih && now.Sub(p.lastBlock) < swarmWait {
			return false
		}
	}
	return true
}

// announceQuiet is a round of announce for a quiet bundle, fetching
// (its files changed on disk) or not: it announces the bundle if
// this client is a chosen announcer whose last announce is old, looks up
// its peers only for a starved fetch, and waits for the next round. It
// reports false when ctx ended.
func (c *Client) announceQuiet(ctx context.Context, ih record.Infohash, b swarmBundle, fetching bool, announced *time.Time, backoff *time.Duration) bool {
	// The next look at who announces, jittered so that a fleet's
	// members do not all come at once.
	wait := seedAnnounce/4 + rand.N(seedAnnounce/2)
	if c.reachable() && time.Since(*announced) > seedAnnounce/2 && c.chosenAnnouncer(b.bundleKey(), ih) {
		cctx, cancel := context.WithTimeout(ctx, dhtCallTimeout)
		err := c.cfg.DHT.Announce(cctx, ih, c.port)
		cancel()
		if err == nil {
			*announced = time.Now()
		} else if ctx.Err() == nil {
			c.log.Debug("dht announce failed", "infohash", ih, "err", err)
			wait = announceErrMax
		}
	}
	switch {
	case fetching && b.starved():
		var eager time.Time
		if err := c.lookupPeers(ctx, ih, b, c.cfg.DHT.Peers, &eager); err != nil && ctx.Err() == nil {
			c.log.Debug("dht lookup failed", "infohash", ih, "err", err)
		}
		wait = *backoff
		*backoff = min(2**backoff, fetchLookupMax)
	case fetching:
		wait = min(wait, time.Second) // is it starved yet?
	default:
		*backoff = fetchLookupMin
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-b.woken():
		return true
	case <-t.C:
		return true
	}
}
