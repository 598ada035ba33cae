package dht

import (
	"net/netip"
	"sync"
	"time"
)

// host is who a packet comes from or goes to, as far as the node's limits
// and its one-node-per-host rules go: an address, or a network of them.
// The zero host stands for everyone the node has no room to tell apart.
type host struct {
	prefix netip.Prefix
	port   uint16
}

// loopbackHost reports whether ap is on the one loopback address where
// test networks and `relay demo` run many nodes of one machine:
// 127.0.0.1 or ::1. There every port is a host of its own. Nobody beyond
// the machine can send from these addresses (Linux drops such packets
// from any other interface as martians).
func loopbackHost(a netip.Addr) bool {
	return a == netip.AddrFrom4([4]byte{127, 0, 0, 1}) || a == netip.IPv6Loopback()
}

// addrHost returns the host of one address: the IP address, or on
// 127.0.0.1 and ::1 the address and port.
func addrHost(ap netip.AddrPort) host {
	a := ap.Addr().Unmap()
	if loopbackHost(a) {
		return host{prefix: netip.PrefixFrom(a, a.BitLen()), port: ap.Port()}
	}
	return host{prefix: netip.PrefixFrom(a, a.BitLen())}
}

// netHost returns the network an address belongs to, which counts as one
// host: its /24 for a public IPv4 address, its /64 for a public IPv6
// address, as libtorrent's dht_restrict_search_ips groups them. Anyone
// with one address usually holds its neighbours too. A private, link-local
// or loopback address is a host on its own (addrHost): a private
// network's machines share one /24, and each is a node of its own.
func netHost(ap netip.AddrPort) host {
	a := ap.Addr().Unmap()
	if a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() {
		return addrHost(netip.AddrPortFrom(a, ap.Port()))
	}
	bits := 64
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits)
	return host{prefix: p}
}

// buckets is a token bucket per host, in a map of bounded size: memory
// stays under max entries whatever the number of hosts that send. When
// the map is full, idle hosts leave it (those whose bucket has refilled);
// when none is idle, every new host shares one bucket, the zero host's,
// until some leave.
type buckets struct {
	rate, burst float64
	max         int

	mu    sync.Mutex
	m     map[host]*bucket
	swept time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newBuckets(rate, burst float64, max int) *buckets {
	return &buckets{rate: rate, burst: burst, max: max, m: make(map[host]*bucket)}
}

// allow takes cost tokens from h's bucket and reports whether it held
// them. A refused cost takes nothing.
func (b *buckets) allow(h host, cost float64, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.m[h]
	if e == nil {
		if len(b.m) >= b.max && now.Sub(b.swept) >= time.Second {
			b.sweep(now)
		}
		if len(b.m) >= b.max {
			h = host{}
			e = b.m[h]
		}
		if e == nil {
			e = &bucket{tokens: b.burst, last: now}
			b.m[h] = e
		}
	}
	e.tokens = min(b.burst, e.tokens+now.Sub(e.last).Seconds()*b.rate)
	e.last = now
	if e.tokens < cost {
		return false
	}
	e.tokens -= cost
	return true
}

// sweep drops the buckets that have refilled: their hosts have been quiet
// long enough that a new bucket is the same.
func (b *buckets) sweep(now time.Time) {
	for h, e := range b.m {
		if e.tokens+now.Sub(e.last).Seconds()*b.rate >= b.burst {
			delete(b.m, h)
		}
	}
	b.swept = now
}
