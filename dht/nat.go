package dht

import (
	"net"
	"net/netip"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"
)

// A node behind NAT (or a firewall that lets in only answers) is reached
// only by the nodes it has just sent to: their queries come back through
// the NAT's state for that flow. A bootstrap node that pings it back, or
// any node it queried, finds it answering and keeps it in its routing table
// as a good node, and hands it out; every other node that queries it
// waits in vain (on a local network a lookup took 1 s instead of 10 ms
// with one such node about). So a node that does not know yet that it is
// reachable, or knows it is behind NAT, says it is read-only (BEP 43: "ro"
// in every message it sends), and nobody adds it to a routing table; its
// own queries are answered as before. It knows once answers say which
// address they came to (BEP 42's "ip", see ExternalIP): one of this host's
// own addresses, or another one, its NAT's.

// roWriter is the node's socket as the DHT server writes to it: while the
// node is not known to be reachable, every KRPC message it sends says it
// is read-only.
type roWriter struct {
	net.PacketConn
	n *Node
}

func (c roWriter) WriteTo(b []byte, addr net.Addr) (int, error) {
	if c.n.reachable.Load() || len(b) == 0 || b[0] != 'd' {
		return c.PacketConn.WriteTo(b, addr)
	}
	var m krpc.Msg
	if err := bencode.Unmarshal(b, &m); err != nil || m.ReadOnly {
		return c.PacketConn.WriteTo(b, addr)
	}
	m.ReadOnly = true
	ro, err := bencode.Marshal(m)
	if err != nil {
		return c.PacketConn.WriteTo(b, addr)
	}
	if _, err := c.PacketConn.WriteTo(ro, addr); err != nil {
		return 0, err
	}
	return len(b), nil
}

// localAddrs returns the addresses this node may be reached at directly:
// the one it listens on, or, listening on every interface, the host's.
func localAddrs(listen netip.AddrPort) map[netip.Addr]bool {
	out := make(map[netip.Addr]bool)
	if ip := listen.Addr().Unmap(); ip.IsValid() && !ip.IsUnspecified() {
		out[ip] = true
		return out
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out[p.Addr().Unmap()] = true
		}
	}
	return out
}

// checkReachable sets whether the node is reachable: whether the address
// most answers name is its own (any address, with Config.Reachable). It runs after each answer's vote.
func (n *Node) checkReachable() {
	ip := n.ExternalIP()
	if !ip.IsValid() {
		return
	}
	own := n.local[ip.Unmap()] || n.cfg.Reachable
	if n.reachable.Swap(own) != own || !n.natLogged.Load() {
		n.natLogged.Store(true)
		if own {
			n.log.Debug("dht node reachable at its own address", "addr", ip)
		} else {
			n.log.Info("dht node behind NAT: it runs read-only (BEP 43), so that no node keeps it as reachable",
				"listen", n.addr, "seen_at", ip)
		}
	}
}
