package transfer

import (
	"net/netip"
	"slices"
	"time"

	"github.com/anacrolix/torrent"
	pp "github.com/anacrolix/torrent/peer_protocol"
)

// Keeping room for new peers in a bundle. The torrent library holds up to
// bundleConns connections a bundle, and makes room for a new one only by
// closing one older than a minute that did little; hosts that hold idle
// connections and open them again every few seconds keep every place.
// tcpListener bounds what one address holds in all; on top of it:
//
//   - once a bundle holds half its places, a connection that gives one
//     address more than bundleConnsPerIP of them is closed as soon as the
//     library adds it;
//   - once it holds three quarters, connections idle for idleEvict (the
//     peer is not interested in us and sent us no block) are closed, the
//     longest idle first, down to three quarters.
//
// Neither closes a connection of a bundle whose info is not known yet
// (closeConn says why).

// bundleConns is the number of connections a bundle may hold.
const bundleConns = 50

// bundleConnsPerIP is how many of a bundle's places one address may take
// once half of them are taken.
const bundleConnsPerIP = 4

// idleEvict is how long a connection may stay idle once its bundle holds
// three quarters of its places.
const idleEvict = 10 * time.Second

// connAddr returns the address of a connection's peer, IPv4 unmapped;
// the zero AddrPort when it is not an IP address and port.
func connAddr(pc *torrent.PeerConn) netip.AddrPort {
	ap, err := netip.ParseAddrPort(pc.RemoteAddr.String())
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// connIP returns the IP address of a connection's peer.
func connIP(pc *torrent.PeerConn) netip.Addr {
	return connAddr(pc).Addr()
}

// onConnAdded notes when a connection joined its bundle, and closes it if
// its address holds more than its share; it runs with the torrent client
// locked.
func (c *Client) onConnAdded(pc *torrent.PeerConn) {
	ip := connIP(pc)
	c.withPeer(pc, func(k peerKey, p *peerPieces) {
		p.added, p.ip = time.Now(), ip
		total, same := 0, 0
		for o, op := range c.peerBits {
			if o.ih != k.ih {
				continue
			}
			total++
			if op.ip == ip {
				same++
			}
		}
		if total > bundleConns/2 && same > bundleConnsPerIP {
			c.evict(pc)
		}
	})
}

// evict has the evictor close pc: the torrent library's callbacks cannot.
func (c *Client) evict(pc *torrent.PeerConn) {
	select {
	case c.evictions <- pc:
	default: // full: sweep finds it
	}
}

// evictor closes the connections evict was given, until the client
// closes.
func (c *Client) evictor() {
	defer c.wg.Done()
	for {
		select {
		case <-c.ctx.Done():
			return
		case pc := <-c.evictions:
			closeConn(pc)
		}
	}
}

// closeConn closes a connection the torrent library holds, unless its
// bundle's info is not known yet; it reports whether it closed it.
//
// The library (anacrolix/torrent v1.61) keeps a closed connection among
// its bundle's peers until the connection's reader notices, and when the
// info arrives in between it counts that connection's pieces (from a
// bitfield or haves sent before the info) as available, and never takes
// them back: dropping the bundle later fails the library's own check of
// those counts, a panic that ends the process ("piece 0 has relative
// availability 2", seen in a fleet of 200 watchers whose pushes start
// fetches by infohash). Once the info is known, closing is safe: the
// close itself takes the pieces back. Until then, the library's own limit
// (it makes room by closing, in one step, a connection that did little)
// bounds a bundle's connections, and sweep closes idle ones once the info
// is in.
func closeConn(pc *torrent.PeerConn) bool {
	if t := pc.Torrent(); t == nil || t.Info() == nil {
		return false
	}
	pc.Close()
	return true
}

// sweep closes idle connections of bundles that hold three quarters of
// their places, down to three quarters. It runs from background.
func (c *Client) sweep() {
	now := time.Now()
	type idle struct {
		pc    *torrent.PeerConn
		since time.Time
	}
	byBundle := make(map[*torrent.Torrent][]idle)
	counts := make(map[*torrent.Torrent]int)
	c.mu.Lock()
	for k, p := range c.peerBits {
		a := c.bundles[k.ih]
		if a == nil {
			continue
		}
		counts[a.t]++
		since := p.added
		if p.lastBlock.After(since) {
			since = p.lastBlock
		}
		if !p.interested && !p.added.IsZero() && now.Sub(since) >= idleEvict {
			byBundle[a.t] = append(byBundle[a.t], idle{k.pc, since})
		}
	}
	c.mu.Unlock()
	for t, list := range byBundle {
		excess := counts[t] - bundleConns*3/4
		if excess <= 0 {
			continue
		}
		// The longest idle first.
		slices.SortFunc(list, func(a, b idle) int { return a.since.Compare(b.since) })
		for _, d := range list[:min(excess, len(list))] {
			if closeConn(d.pc) {
				c.log.Debug("closed an idle connection to make room", "peer", d.pc.RemoteAddr.String(), "infohash", t.InfoHash())
			}
		}
	}
}

// onInterest follows whether a peer is interested in what we have; c.mu
// is held.
func (p *peerPieces) onInterest(typ pp.MessageType) {
	p.interested = typ == pp.Interested
}
