package dht

import (
	"net/netip"
	"sync"

	"github.com/anacrolix/dht/v2/krpc"
)

// externalVotes is what the nodes that answered this node said its
// address is (BEP 42's "ip" in every answer of anacrolix's and most
// other nodes): behind NAT, the NAT's public address. A node may lie, so
// the address named by the most answers wins; at most maxExternalVotes
// addresses are counted, the counts starting again when more are named.
type externalVotes struct {
	mu    sync.Mutex
	votes map[netip.Addr]int
}

const maxExternalVotes = 16

// add counts one answer's "ip"; it reports whether there was one.
func (v *externalVotes) add(ip krpc.NodeAddr) bool {
	ap := addrPort(ip.IP, ip.Port)
	if !ap.IsValid() || ap.Addr().IsUnspecified() {
		return false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.votes == nil || len(v.votes) >= maxExternalVotes && v.votes[ap.Addr()] == 0 {
		v.votes = make(map[netip.Addr]int)
	}
	v.votes[ap.Addr()]++
	return true
}

// ExternalIP returns the IP address other nodes see this node's queries
// come from, by most of their answers so far: behind NAT, the NAT's
// public address, which peers are given for what this host announces. It
// is the zero Addr until a node has said.
func (n *Node) ExternalIP() netip.Addr {
	n.external.mu.Lock()
	defer n.external.mu.Unlock()
	var best netip.Addr
	most := 0
	for ip, c := range n.external.votes {
		if c > most || c == most && ip.Less(best) {
			best, most = ip, c
		}
	}
	return best
}

// Reachable reports whether other hosts can send to this node unasked: a
// bootstrap node, a read-only one and one told so (Config.Reachable) say
// yes; any other says yes once answers show it is seen at one of its own
// addresses, and no while it is not known or is seen behind NAT.
func (n *Node) Reachable() bool {
	return n.reachable.Load()
}
