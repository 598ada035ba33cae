package dht

import (
	"net"
	"net/netip"

	"github.com/anacrolix/dht/v2/krpc"
)

// addrPort returns ip:port as a netip.AddrPort with an IPv4-mapped IPv6
// address (::ffff:a.b.c.d) turned back into IPv4, so that one node has one
// address. It is invalid for an address that does not parse.
func addrPort(ip net.IP, port int) netip.AddrPort {
	a, ok := netip.AddrFromSlice(ip)
	if !ok || port <= 0 || port > 0xffff {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(port))
}

// udpAddrPort is addrPort for a net.Addr read from a socket.
func udpAddrPort(a net.Addr) netip.AddrPort {
	if u, ok := a.(*net.UDPAddr); ok {
		return addrPort(u.IP, u.Port)
	}
	return netip.AddrPort{}
}

func nodeAddr(ap netip.AddrPort) krpc.NodeAddr {
	return krpc.NodeAddr{IP: ap.Addr().AsSlice(), Port: int(ap.Port())}
}

// family says which addresses a socket can send to.
type family struct {
	v4, v6 bool
}

// familyOf returns the family of a socket bound to local: an IPv4 address
// reaches IPv4 only, a specific IPv6 address IPv6 only, an unspecified IPv6
// address (a dual-stack socket) both.
func familyOf(local net.Addr) family {
	ap := udpAddrPort(local)
	switch {
	case !ap.IsValid():
		return family{v4: true, v6: true}
	case ap.Addr().Is4():
		return family{v4: true}
	case ap.Addr().IsUnspecified():
		return family{v4: true, v6: true}
	default:
		return family{v6: true}
	}
}

// wants returns the node lists (BEP 32) worth asking for.
func (f family) wants() []krpc.Want {
	var w []krpc.Want
	if f.v4 {
		w = append(w, krpc.WantNodes)
	}
	if f.v6 {
		w = append(w, krpc.WantNodes6)
	}
	return w
}

func (f family) reaches(ap netip.AddrPort) bool {
	if !ap.IsValid() || ap.Port() == 0 || ap.Addr().IsUnspecified() {
		return false
	}
	if ap.Addr().Is4() {
		return f.v4
	}
	return f.v6
}

// usableNodes returns the nodes of a reply (its IPv4 and IPv6 lists) that
// this node can reach, each once. Nodes list every IPv4 node a second time
// as ::ffff:a.b.c.d in their IPv6 list; counted twice, one node would take
// two of the k closest places and a put would reach half as many nodes.
//
// It keeps at most K nodes of each list and one node of each host (see
// netHost), as an honest answer holds: a hostile node's answer of 150
// made-up nodes next to the target, on one address, made a lookup query
// (and wait for) every one of them.
func usableNodes(r *krpc.Return, f family, self krpc.ID) []krpc.NodeInfo {
	type key struct {
		id krpc.ID
		ap netip.AddrPort
	}
	seen := make(map[key]bool, len(r.Nodes)+len(r.Nodes6))
	hosts := make(map[host]bool)
	var out []krpc.NodeInfo
	add := func(ni krpc.NodeInfo) {
		ap := addrPort(ni.Addr.IP, ni.Addr.Port)
		k := key{ni.ID, ap}
		if ni.ID == self || !f.reaches(ap) || seen[k] {
			return
		}
		seen[k] = true
		if h := netHost(ap); !hosts[h] {
			hosts[h] = true
			out = append(out, krpc.NodeInfo{ID: ni.ID, Addr: nodeAddr(ap)})
		}
	}
	for _, ni := range r.Nodes[:min(len(r.Nodes), K)] {
		add(ni)
	}
	for _, ni := range r.Nodes6[:min(len(r.Nodes6), K)] {
		add(ni)
	}
	return out
}
