package transfer

import (
	"context"
	"net"
	"net/netip"
	"time"

	anacrolixdht "github.com/anacrolix/dht/v2"
	"github.com/anacrolix/torrent"

	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
)

// DHT is the peer discovery a Client needs of a DHT node (BEP 5).
// *dht.Node of relay's package dht is one. If the value also has a method
// Server() *github.com/anacrolix/dht/v2.Server, the torrent client is
// given that server too, to tell peers its DHT port and add theirs to the
// routing table; if it has Addr() netip.AddrPort, Config.Listen
// defaults to its port number; and if it has ExternalIP() netip.Addr (the
// address other nodes see it at: behind NAT, the NAT's), the peers the DHT
// names at that address and the client's port are this client, and are
// not dialled.
type DHT interface {
	// Announce tells the DHT that this host serves ih on TCP port port.
	Announce(ctx context.Context, ih record.Infohash, port int) error
	// Peers returns peers the DHT knows for ih.
	Peers(ctx context.Context, ih record.Infohash) ([]netip.AddrPort, error)
}

type dhtServerer interface {
	Server() *anacrolixdht.Server
}

type dhtAddrer interface {
	Addr() netip.AddrPort
}

type dhtExternaler interface {
	ExternalIP() netip.Addr
}

// dhtReacher is a DHT node that knows whether others can reach it (as
// *dht.Node does): one behind NAT is not.
type dhtReacher interface {
	Reachable() bool
}

// reachable reports whether other hosts can dial this client: false
// only when its DHT node found itself behind NAT.
func (c *Client) reachable() bool {
	if d, ok := c.cfg.DHT.(dhtReacher); ok && c.cfg.DHT != nil {
		return d.Reachable()
	}
	return true
}

// utpNode is a DHT node that takes uTP connections on its socket (as
// *dht.Node does): peers learn the port from the DHT, and most dial uTP
// first.
type utpNode interface {
	UTP() net.Listener
}

// Announce timing. A fetch looks for peers again soon (1 s, doubling to
// 30 s) while it runs; a seeded bundle is announced again every 15
// minutes, well within the 30 minutes DHT nodes keep a peer.
const (
	fetchLookupMin = time.Second
	fetchLookupMax = 30 * time.Second
	seedAnnounce   = 15 * time.Minute
	announceErrMax = time.Minute
	dhtCallTimeout = 30 * time.Second
)

// dhtRepeater is a DHT node that can ask count of the closest nodes of
// its last lookup of a bundle's peers again, the next ones in turn, for
// count packets instead of a lookup (as *dht.Node does).
type dhtRepeater interface {
	PeersAgain(ctx context.Context, ih record.Infohash, count int) ([]netip.AddrPort, error)
}

// announce announces a bundle in the DHT with the client's TCP port and
// looks up its peers and hands them to the torrent, which dials them:
// often while a fetch of it runs, and on the schedule of seedLookupWait
// while it is seeded (with the quicker asks of natAsk behind NAT), until
// ctx ends. The announce runs beside the lookup, not after it: a peer
// that only dials out (a seeder behind NAT) finds this one a lookup
// sooner. A bundle served as one of a fleet (Serve) is announced as
// announceShare says instead.
func (c *Client) announce(ctx context.Context, ih record.Infohash, b swarmBundle) {
	backoff := fetchLookupMin
	var announced, nextLookup, eagerUntil time.Time
	repeater, _ := c.cfg.DHT.(dhtRepeater)
	for {
		fetching, seeding, quiet, since := b.announceState()
		if quiet {
			if !c.announceQuiet(ctx, ih, b, fetching, &announced, &backoff) {
				return
			}
			continue
		}
		var announcing chan error
		if (fetching || seeding || !announced.IsZero()) && time.Since(announced) > seedAnnounce/2 {
			announcing = make(chan error, 1)
			go func() {
				cctx, cancel := context.WithTimeout(ctx, dhtCallTimeout)
				defer cancel()
				announcing <- c.cfg.DHT.Announce(cctx, ih, c.port)
			}()
		}
		// Between a seeded bundle's lookups, only the quick asks.
		again := !fetching && seeding && time.Now().Before(nextLookup) && repeater != nil
		var err error
		switch {
		case fetching, seeding && !again && c.seedLookups.Wait(ctx) == nil:
			err = c.lookupPeers(ctx, ih, b, c.cfg.DHT.Peers, &eagerUntil)
			nextLookup = time.Time{}
		case again && c.natAsks.WaitN(ctx, natAskNodes) == nil:
			ask := func(ctx context.Context, ih record.Infohash) ([]netip.AddrPort, error) {
				return repeater.PeersAgain(ctx, ih, natAskNodes)
			}
			err = c.lookupPeers(ctx, ih, b, ask, &eagerUntil)
		}
		if announcing != nil {
			if aerr := <-announcing; aerr == nil {
				announced = time.Now()
			} else if err == nil {
				err = aerr
			}
		}
		if ctx.Err() != nil {
			return
		}
		var wait time.Duration
		switch {
		case err != nil:
			c.log.Debug("dht announce or lookup failed", "infohash", ih, "err", err)
			wait = min(backoff, announceErrMax)
			backoff = min(2*backoff, announceErrMax)
		case fetching:
			wait = backoff
			backoff = min(2*backoff, fetchLookupMax)
		case seeding:
			backoff = fetchLookupMin
			now := time.Now()
			if nextLookup.IsZero() {
				nextLookup = now.Add(seedLookupWait(now.Sub(since), c.reachable()))
			}
			wait = nextLookup.Sub(now)
			if repeater != nil && natEager(now, since, eagerUntil, c.reachable(), b.seedConnected()) {
				wait = min(wait, natAsk)
			}
		default:
			wait = seedAnnounce
			backoff = fetchLookupMin
		}
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-b.woken():
			t.Stop()
			backoff = fetchLookupMin
		case <-t.C:
		}
	}
}

// lookupPeers looks up a bundle's peers with find and hands them to the
// bundle; a peer not named before makes a seeder behind NAT eager (see
// natEager) until natEagerFor from now.
func (c *Client) lookupPeers(ctx context.Context, ih record.Infohash, b swarmBundle, find func(context.Context, record.Infohash) ([]netip.AddrPort, error), eagerUntil *time.Time) error {
	cctx, cancel := context.WithTimeout(ctx, dhtCallTimeout)
	peers, err := find(cctx, ih)
	cancel()
	if err != nil {
		return err
	}
	if b.found(peers) > 0 {
		*eagerUntil = time.Now().Add(natEagerFor)
	}
	c.log.Debug("dht peers", "infohash", ih, "peers", len(peers))
	return nil
}

// swarmBundle is what announce needs of a bundle, on either engine: the
// torrent library's (torrentSwarm) or relay's own (wireBundle).
type swarmBundle interface {
	// announceState says whether the bundle is being fetched, seeded,
	// served as one of a fleet (Serve), and since when it is seeded.
	announceState() (fetching, seeding, quiet bool, since time.Time)
	// woken receives when a fetch starts, the bundle is seeded, or its
	// last seed left.
	woken() <-chan struct{}
	// found hands the bundle peers the DHT named and returns how many of
	// them it had not been given before.
	found(peers []netip.AddrPort) int
	// seedConnected reports whether a peer holding the whole bundle is
	// connected.
	seedConnected() bool
	// bundleKey is the key of the bundle's publisher, zero until known.
	bundleKey() signer.PublicKey
	// starved reports whether its running fetch has had no block from
	// any peer for swarmWait (see announceQuiet).
	starved() bool
}

// torrentSwarm is a bundle of the torrent library's engine, as announce
// sees it.
type torrentSwarm struct {
	c  *Client
	ih record.Infohash
	a  *active
}

func (s torrentSwarm) announceState() (fetching, seeding, quiet bool, since time.Time) {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return s.a.fetches > 0, s.a.seeding, s.a.quiet, s.a.seedSince
}

func (s torrentSwarm) woken() <-chan struct{} { return s.a.wake }

func (s torrentSwarm) found(peers []netip.AddrPort) int {
	return s.c.addPeers(s.a.t, peers, torrent.PeerSourceDhtGetPeers)
}

func (s torrentSwarm) seedConnected() bool { return s.c.seedConnected(s.ih) }

func (s torrentSwarm) bundleKey() signer.PublicKey {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return s.a.key
}

func (s torrentSwarm) starved() bool {
	s.c.mu.Lock()
	since := s.a.fetchedAt
	s.c.mu.Unlock()
	return s.c.starved(s.ih, since)
}

// otherPeers returns the valid addresses of peers, leaving out this
// client's own (its listening address, and that address at the IP the
// DHT sees it at), unmapped.
func (c *Client) otherPeers(peers []netip.AddrPort) []netip.AddrPort {
	self, external := c.Addr(), netip.AddrPort{}
	if d, ok := c.cfg.DHT.(dhtExternaler); ok && c.cfg.DHT != nil {
		external = netip.AddrPortFrom(d.ExternalIP(), self.Port())
	}
	var out []netip.AddrPort
	for _, p := range peers {
		if !p.IsValid() || p.Port() == 0 || p == self || p == external {
			continue
		}
		out = append(out, netip.AddrPortFrom(p.Addr().Unmap(), p.Port()))
	}
	return out
}

// addPeers gives peer addresses to a bundle's torrent, leaving out this
// client's, and remembers them for Reach. It returns how many of them
// the bundle had not been given before.
func (c *Client) addPeers(t *torrent.Torrent, peers []netip.AddrPort, source torrent.PeerSource) (added int) {
	var ps []torrent.PeerInfo
	others := c.otherPeers(peers)
	for _, p := range others {
		ps = append(ps, torrent.PeerInfo{
			Addr:    torrent.StringAddr(p.String()),
			Source:  source,
			Trusted: source == torrent.PeerSourceDirect,
		})
	}
	if len(ps) > 0 {
		c.mu.Lock()
		if a := c.bundles[record.Infohash(t.InfoHash())]; a != nil && a.t == t {
			added = a.reach.notePeers(others)
		}
		c.mu.Unlock()
		t.AddPeers(ps)
	}
	return added
}
