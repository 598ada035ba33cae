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
// routing table; and if it has Addr() netip.AddrPort, Config.Listen
// defaults to its port number.
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

// announce announces a bundle in the DHT with the client's TCP port and,
// while a fetch of it runs, looks up its peers and hands them to the
// torrent, until ctx ends.
func (c *Client) announce(ctx context.Context, ih record.Infohash, a *active) {
	backoff := fetchLookupMin
	var announced time.Time
	for {
		c.mu.Lock()
		fetching := a.fetches > 0
		c.mu.Unlock()
		var err error
		if fetching {
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

// addPeers gives peer addresses to a torrent, leaving out this client's.
func (c *Client) addPeers(t *torrent.Torrent, peers []netip.AddrPort, source torrent.PeerSource) {
	self := c.Addr()
	var ps []torrent.PeerInfo
	for _, p := range peers {
		if !p.IsValid() || p.Port() == 0 || p == self {
			continue
		}
		ps = append(ps, torrent.PeerInfo{
			Addr:    torrent.StringAddr(netip.AddrPortFrom(p.Addr().Unmap(), p.Port()).String()),
			Source:  source,
			Trusted: source == torrent.PeerSourceDirect,
		})
	}
	if len(ps) > 0 {
		t.AddPeers(ps)
	}
}
