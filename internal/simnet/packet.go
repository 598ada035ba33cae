package simnet

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
)

// socketQueue is how many datagrams a socket holds unread before it drops
// the next, as a UDP socket's receive buffer does.
const socketQueue = 512

// maxDatagram is the largest datagram sent whole; larger ones are
// refused, as a path's MTU would.
const maxDatagram = 64 << 10

var errTooBig = errors.New("datagram too large")

type datagram struct {
	from netip.AddrPort
	b    []byte
}

// packetConn is a datagram socket of a host.
type packetConn struct {
	h    *Host
	addr netip.AddrPort // public
	in   chan datagram
	rd   deadline
	done chan struct{}
	once sync.Once
}

// ListenPacket opens a datagram socket on the host. network is "udp" or
// "udp4"; address is host:port, the host part empty, unspecified or the
// host's own address, port 0 for a free one.
func (h *Host) ListenPacket(network, address string) (net.PacketConn, error) {
	if network != "udp" && network != "udp4" {
		return nil, &net.OpError{Op: "listen", Net: network, Err: net.UnknownNetworkError(network)}
	}
	n := h.n
	n.mu.Lock()
	defer n.mu.Unlock()
	ap, err := h.bind(address, func(ap netip.AddrPort) bool { return n.packets[ap] != nil })
	if err != nil {
		return nil, err
	}
	c := &packetConn{h: h, addr: ap, in: make(chan datagram, socketQueue), done: make(chan struct{})}
	c.rd.init()
	n.packets[ap] = c
	return c, nil
}

// ReadFrom returns the next datagram, from its sender's public address.
func (c *packetConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case <-c.done:
		return 0, nil, net.ErrClosed
	default:
	}
	select {
	case d := <-c.in:
		c.h.n.inFlight.Add(-int64(len(d.b)))
		return copy(b, d.b), net.UDPAddrFromAddrPort(d.from), nil
	case <-c.done:
		return 0, nil, net.ErrClosed
	case <-c.rd.wait():
		return 0, nil, os.ErrDeadlineExceeded
	}
}

// WriteTo sends b to addr. Like UDP, it reports success whether or not
// the datagram arrives.
func (c *packetConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	select {
	case <-c.done:
		return 0, net.ErrClosed
	default:
	}
	to, err := addrPortOf(addr)
	if err != nil {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: err}
	}
	to = unmap(to)
	if len(b) > maxDatagram {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: errTooBig}
	}
	h, n := c.h, c.h.n
	now := time.Now()
	if h.dead.Load() || !h.sentTo(to.Addr(), now) {
		return len(b), nil
	}
	h.packetsSent.Add(1)
	if n.lost() {
		return len(b), nil
	}
	if n.inFlight.Add(int64(len(b))) > maxInFlight {
		n.inFlight.Add(-int64(len(b)))
		return len(b), nil
	}
	d := datagram{from: c.addr, b: append([]byte(nil), b...)}
	time.AfterFunc(n.oneWay(h.addr, to.Addr()), func() { n.deliver(to, d) })
	return len(b), nil
}

// deliver hands d to the socket at to, if there is one that lets it in;
// else it is lost. inFlight is released when it is read or lost.
func (n *Network) deliver(to netip.AddrPort, d datagram) {
	n.mu.RLock()
	c := n.packets[to]
	n.mu.RUnlock()
	if c == nil || c.h.dead.Load() || !c.h.letsIn(d.from.Addr(), time.Now()) {
		n.inFlight.Add(-int64(len(d.b)))
		return
	}
	select {
	case <-c.done:
		n.inFlight.Add(-int64(len(d.b)))
		return
	default:
	}
	if n.cfg.Tap != nil {
		n.cfg.Tap(d.from, to, d.b)
	}
	select {
	case c.in <- d:
		c.h.packetsIn.Add(1)
	default:
		n.inFlight.Add(-int64(len(d.b)))
	}
}

// Close closes the socket; datagrams queued for it are dropped.
func (c *packetConn) Close() error {
	c.once.Do(func() {
		n := c.h.n
		n.mu.Lock()
		delete(n.packets, c.addr)
		n.mu.Unlock()
		close(c.done)
		for {
			select {
			case d := <-c.in:
				n.inFlight.Add(-int64(len(d.b)))
			default:
				c.rd.set(time.Time{})
				return
			}
		}
	})
	return nil
}

// LocalAddr is the socket's own address: behind NAT, a private one.
func (c *packetConn) LocalAddr() net.Addr {
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(c.h.local, c.addr.Port()))
}

func (c *packetConn) SetDeadline(t time.Time) error {
	c.rd.set(t)
	return nil
}

func (c *packetConn) SetReadDeadline(t time.Time) error {
	c.rd.set(t)
	return nil
}

// SetWriteDeadline does nothing: a write never waits.
func (c *packetConn) SetWriteDeadline(time.Time) error { return nil }

// deadline is a read or write deadline: a channel closed once it passes.
type deadline struct {
	mu    sync.Mutex
	ch    chan struct{}
	timer *time.Timer
}

func (d *deadline) init() { d.ch = make(chan struct{}) }

// set moves the deadline to t; the zero time is none.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		// It fired: the channel is closed.
		d.ch = make(chan struct{})
	}
	d.timer = nil
	select {
	case <-d.ch:
		d.ch = make(chan struct{})
	default:
	}
	if t.IsZero() {
		return
	}
	wait := time.Until(t)
	if wait <= 0 {
		close(d.ch)
		return
	}
	ch := d.ch
	d.timer = time.AfterFunc(wait, func() { close(ch) })
}

// wait returns a channel closed when the deadline passes.
func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ch
}
