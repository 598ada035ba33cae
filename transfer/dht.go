package transfer

import (
	"context"
	"net"
	"net/netip"
	"time"

	anacrolixdht "github.com/anacrolix/dht/v2"
	"github.com/anacrolix/torrent"

	"github.com/relay-sh/relay/record"
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

// announce announces a bundle in the DHT with the client's TCP port and
// looks up its peers and hands them to the torrent, which dials them:
// often while a fetch of it runs, and on the schedule of seedLookupWait
// while it is seeded, until ctx ends.
func (c *Client) announce(ctx context.Context, ih record.Infohash, a *active) {
	backoff := fetchLookupMin
	var announced time.Time
	for {
		c.mu.Lock()
		fetching, seeding, since := a.fetches > 0, a.seeding, a.seedSince
		c.mu.Unlock()
		var err error
		if fetching || seeding && c.seedLookups.Wait(ctx) == nil {
			var peers []netip.AddrPort
			cctx, cancel := context.WithTimeout(ctx, dhtCallTimeout)
			peers, err = c.cfg.DHT.Peers(cctx, ih)
			cancel()
			if err == nil {
				c.addPeers(a.t, peers, torrent.PeerSourceDhtGetPeers)
				c.log.Debug("dht peers", "infohash", ih, "peers", len(peers))
			}
		}
		if time.Since(announced) > seedAnnounce/2 && ctx.Err() == nil {
			cctx, cancel := context.WithTimeout(ctx, dhtCallTimeout)
			aerr := c.cfg.DHT.Announce(cctx, ih, c.port)
			cancel()
			if aerr == nil {
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
			wait = seedLookupWait(time.Since(since), c.reachable())
			backoff = fetchLookupMin
		default:
			wait = seedAnnounce
			backoff = fetchLookupMin
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-a.wake:
			t.Stop()
			backoff = fetchLookupMin
		case <-t.C:
		}
	}
}

// addPeers gives peer addresses to a bundle's torrent, leaving out this
// client's, and remembers them for Reach.
func (c *Client) addPeers(t *torrent.Torrent, peers []netip.AddrPort, source torrent.PeerSource) {
	self, external := c.Addr(), netip.AddrPort{}
	if d, ok := c.cfg.DHT.(dhtExternaler); ok && c.cfg.DHT != nil {
		external = netip.AddrPortFrom(d.ExternalIP(), self.Port())
	}
	var ps []torrent.PeerInfo
	for _, p := range peers {
		if !p.IsValid() || p.Port() == 0 || p == self || p == external {
			continue
		}
		ps = append(ps, torrent.PeerInfo{
			Addr:    torrent.StringAddr(netip.AddrPortFrom(p.Addr().Unmap(), p.Port()).String()),
			Source:  source,
			Trusted: source == torrent.PeerSourceDirect,
		})
	}
	if len(ps) > 0 {
		c.mu.Lock()
		if a := c.bundles[record.Infohash(t.InfoHash())]; a != nil && a.t == t {
			a.notePeers(ps)
		}
		c.mu.Unlock()
		t.AddPeers(ps)
	}
}
