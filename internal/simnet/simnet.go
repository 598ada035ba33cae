// Package simnet is an in-process Internet for simulations: hosts with
// addresses of their own, datagram sockets (net.PacketConn) and streams
// (net.Listener, dialling) between them, each pair of hosts with a round
// trip of its own drawn from a log-normal distribution, packet loss, hosts
// that vanish without notice, and hosts behind NAT that take no connection
// and no datagram from anyone they have not sent to. Real relay DHT nodes
// (dht.Config.Conn) and torrent clients (transfer.Config.Network) run on
// it unchanged, hundreds in one process.
//
// Time is real time: a packet is delivered when its delay has passed on
// the wall clock, by a timer, so a simulation takes as long as the
// Internet would (Config.RTT scales every delay down when that is too
// slow). Memory is bounded: each socket queues at most socketQueue
// datagrams, the network holds at most maxInFlight bytes of datagrams in
// flight, and a stream at most streamWindow bytes not yet read.
//
// It never touches the system's network and never prints.
package simnet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultRTT is the median round trip between two hosts when Config.RTT
// is zero: about what a client in Europe or North America measures to the
// nodes of the Mainline DHT.
const DefaultRTT = 80 * time.Millisecond

// DefaultSpread is the sigma of the round trips' log-normal distribution
// when Config.Spread is zero: with an 80 ms median, one pair of hosts in
// ten is nearer than 37 ms, one in ten farther than 173 ms, one in a
// hundred farther than 324 ms.
const DefaultSpread = 0.6

// maxRTT caps a drawn round trip; minRTT floors it.
const (
	maxRTT = 2 * time.Second
	minRTT = 2 * time.Millisecond
)

// natTimeout is how long a NAT keeps letting in datagrams from an address
// its host sent to (Linux's conntrack keeps UDP flows 30 s unanswered,
// 120 s once answered; home routers vary).
const natTimeout = 2 * time.Minute

// natEntries bounds a NAT's table of addresses; new flows are refused
// while it is full of live ones.
const natEntries = 4096

// maxInFlight bounds the bytes of datagrams the network holds between
// send and delivery; beyond it datagrams are dropped, as a full router
// queue drops them.
const maxInFlight = 64 << 20

// Config configures a Network. The zero value is an 80 ms median round
// trip, no loss, no upload limit.
type Config struct {
	// RTT is the median round trip between two hosts; zero means
	// DefaultRTT.
	RTT time.Duration
	// Spread is the sigma of the log-normal distribution of round trips
	// (of the natural logarithm); zero means DefaultSpread.
	Spread float64
	// Loss is the share of datagrams lost on every link, 0 to 1. Streams
	// lose nothing, as TCP does not: a segment that was lost arrives a
	// retransmission timeout later, and the stream's later data behind it.
	Loss float64
	// UploadRate is each host's upload, in bytes per second, over all its
	// streams (datagrams are not counted); zero is no limit. Host's
	// HostConfig.UploadRate overrides it.
	UploadRate int64
	// Seed chooses the round trips: one seed gives every pair of hosts
	// the same round trip in every run.
	Seed uint64
	// Tap, when set, is called with every datagram as it is delivered to
	// an open socket, from the public address it came from: to count
	// what reaches whom. It must not keep b nor block.
	Tap func(from, to netip.AddrPort, b []byte)
}

// HostConfig configures one host.
type HostConfig struct {
	// NAT puts the host behind NAT: its sockets see a private address of
	// their own, others see its public address, and nothing comes in but
	// datagrams from addresses it sent to in the last two minutes. Nobody
	// can connect to it.
	NAT bool
	// UploadRate overrides Config.UploadRate for this host; negative is no
	// limit.
	UploadRate int64
}

// Network is a simulated Internet. Its methods are safe for concurrent
// use.
type Network struct {
	cfg      Config
	inFlight atomic.Int64

	mu        sync.RWMutex
	hosts     map[netip.Addr]*Host
	packets   map[netip.AddrPort]*packetConn
	listeners map[netip.AddrPort]*listener
	count     uint32
}

// New returns an empty network.
func New(cfg Config) *Network {
	if cfg.RTT <= 0 {
		cfg.RTT = DefaultRTT
	}
	if cfg.Spread <= 0 {
		cfg.Spread = DefaultSpread
	}
	return &Network{
		cfg:       cfg,
		hosts:     make(map[netip.Addr]*Host),
		packets:   make(map[netip.AddrPort]*packetConn),
		listeners: make(map[netip.AddrPort]*listener),
	}
}

// Host is a machine on the network, with one public IPv4 address.
type Host struct {
	n      *Network
	addr   netip.Addr // public
	local  netip.Addr // its sockets' own: addr, or a private one behind NAT
	nat    bool
	upRate int64
	dead   atomic.Bool

	mu       sync.Mutex
	upFree   time.Time                // when its uplink has sent what it was given
	natTable map[netip.Addr]time.Time // NAT: whom it sent to, when
	nextPort uint16

	streamSent, streamReceived atomic.Int64
	packetsSent, packetsIn     atomic.Int64
}

// NewHost adds a host with an address of its own, each in a /24 of its
// own (100.64.0.0/10, the shared address space, which Go counts as
// public: relay's DHT treats each /24 as one host).
func (n *Network) NewHost(hc HostConfig) (*Host, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	i := n.count
	if i >= 1<<14 {
		return nil, errors.New("simnet: no address left")
	}
	n.count++
	a := netip.AddrFrom4([4]byte{100, 64 + byte(i>>8), byte(i), 1})
	h := &Host{n: n, addr: a, local: a, nat: hc.NAT, upRate: n.cfg.UploadRate, nextPort: 10000}
	if hc.UploadRate != 0 {
		h.upRate = max(hc.UploadRate, 0)
	}
	if hc.NAT {
		h.local = netip.AddrFrom4([4]byte{192, 168, 1, 2})
		h.natTable = make(map[netip.Addr]time.Time)
	}
	n.hosts[a] = h
	return h, nil
}

// Addr returns the host's public address, the one others reach it at (or,
// behind NAT, see it at).
func (h *Host) Addr() netip.Addr { return h.addr }

// NAT reports whether the host is behind NAT.
func (h *Host) NAT() bool { return h.nat }

// Kill makes the host vanish without notice: whatever it sends and
// whatever is sent to it is lost from now on, its sockets stay open, and
// nobody is told. Others keep it in their routing tables until they find
// out.
func (h *Host) Kill() { h.dead.Store(true) }

// Dead reports whether Kill was called.
func (h *Host) Dead() bool { return h.dead.Load() }

// Stats are what a host sent and received.
type Stats struct {
	// StreamSent and StreamReceived are bytes of stream data.
	StreamSent, StreamReceived int64
	// PacketsSent and PacketsReceived count datagrams (those received
	// reached one of its sockets).
	PacketsSent, PacketsReceived int64
}

// Stats returns what the host sent and received so far.
func (h *Host) Stats() Stats {
	return Stats{
		StreamSent: h.streamSent.Load(), StreamReceived: h.streamReceived.Load(),
		PacketsSent: h.packetsSent.Load(), PacketsReceived: h.packetsIn.Load(),
	}
}

// bind resolves a local address given to Listen or ListenPacket to the
// port to bind on the host: its IP must be empty, unspecified, or the
// host's own (private or public); port 0 picks a free one.
func (h *Host) bind(address string, taken func(netip.AddrPort) bool) (netip.AddrPort, error) {
	hs, ps, err := net.SplitHostPort(address)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("simnet: %w", err)
	}
	if hs != "" {
		ip, err := netip.ParseAddr(hs)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("simnet: %q is not an IP address", hs)
		}
		ip = ip.Unmap()
		if !ip.IsUnspecified() && ip != h.addr && ip != h.local {
			return netip.AddrPort{}, fmt.Errorf("simnet: %s is not this host's address (%s)", ip, h.local)
		}
	}
	var port uint64
	if ps != "" {
		if port, err = parsePort(ps); err != nil {
			return netip.AddrPort{}, err
		}
	}
	if port != 0 {
		ap := netip.AddrPortFrom(h.addr, uint16(port))
		if taken(ap) {
			return netip.AddrPort{}, &net.OpError{Op: "listen", Net: "sim", Addr: net.TCPAddrFromAddrPort(ap), Err: syscall.EADDRINUSE}
		}
		return ap, nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for range 1 << 16 {
		p := h.nextPort
		h.nextPort++
		if h.nextPort < 10000 {
			h.nextPort = 10000
		}
		if ap := netip.AddrPortFrom(h.addr, p); !taken(ap) {
			return ap, nil
		}
	}
	return netip.AddrPort{}, errors.New("simnet: no port left")
}

func parsePort(s string) (uint64, error) {
	var p uint64
	if _, err := fmt.Sscan(s, &p); err != nil || p > 0xffff {
		return 0, fmt.Errorf("simnet: bad port %q", s)
	}
	return p, nil
}

// oneWay returns the delay of one trip between two hosts: half their
// round trip, drawn once for the pair from the network's seed (so no
// table grows with the number of pairs), with up to 10% of jitter for
// this one trip.
func (n *Network) oneWay(a, b netip.Addr) time.Duration {
	x, y := a.As4(), b.As4()
	u, v := uint64(binary.BigEndian.Uint32(x[:])), uint64(binary.BigEndian.Uint32(y[:]))
	if u > v {
		u, v = v, u
	}
	r := rand.New(rand.NewPCG(n.cfg.Seed^u<<32^v, v*0x9e3779b97f4a7c15^u))
	rtt := time.Duration(float64(n.cfg.RTT) * math.Exp(n.cfg.Spread*r.NormFloat64()))
	rtt = min(max(rtt, minRTT), maxRTT)
	return time.Duration(float64(rtt/2) * (1 + 0.1*rand.Float64()))
}

// lost reports whether a datagram is lost.
func (n *Network) lost() bool { return n.cfg.Loss > 0 && rand.Float64() < n.cfg.Loss }

// sentTo notes, behind NAT, that the host sent to a; false means the NAT's
// table is full and the datagram is dropped.
func (h *Host) sentTo(a netip.Addr, now time.Time) bool {
	if !h.nat {
		return true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.natTable[a]; !ok && len(h.natTable) >= natEntries {
		for k, t := range h.natTable {
			if now.Sub(t) > natTimeout {
				delete(h.natTable, k)
			}
		}
		if len(h.natTable) >= natEntries {
			return false
		}
	}
	h.natTable[a] = now
	return true
}

// letsIn reports whether a datagram from a gets to the host.
func (h *Host) letsIn(a netip.Addr, now time.Time) bool {
	if !h.nat {
		return true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	t, ok := h.natTable[a]
	return ok && now.Sub(t) <= natTimeout
}

// uplink takes n bytes onto the host's uplink and returns when their last
// byte has left.
func (h *Host) uplink(n int, now time.Time) time.Time {
	if h.upRate <= 0 {
		return now
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	start := now
	if h.upFree.After(start) {
		start = h.upFree
	}
	h.upFree = start.Add(time.Duration(float64(n) / float64(h.upRate) * float64(time.Second)))
	return h.upFree
}

// addrPortOf reads an address a caller gave: a *net.UDPAddr or
// *net.TCPAddr, or a string.
func addrPortOf(a net.Addr) (netip.AddrPort, error) {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort(), nil
	case *net.TCPAddr:
		return a.AddrPort(), nil
	}
	return netip.ParseAddrPort(a.String())
}

// unmap turns ::ffff:a.b.c.d into a.b.c.d.
func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
