package simnet

import (
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"
)

// streamWindow is how many bytes a stream holds sent and not yet read
// before a write waits, as TCP's window makes it.
const streamWindow = 1 << 20

// segmentSize is the most one write puts in one segment: a loss delays
// the segment it hits, and everything after it.
const segmentSize = 64 << 10

// mss is the size of a TCP segment on the Internet, for the chance that a
// segment of segmentSize bytes lost one of its packets.
const mss = 1400

// minRTO is the least a lost segment or connection attempt is late by:
// Linux's minimum retransmission timeout is 200 ms, and a SYN's first is
// 1 s.
const (
	minRTO = 200 * time.Millisecond
	synRTO = time.Second
)

// connectTimeout is how long a connection attempt to a host that never
// answers waits, when the context allows that long (Linux retries a SYN
// for about two minutes; the torrent library gives up much sooner).
const connectTimeout = 20 * time.Second

// backlog is how many connections a listener holds not yet accepted; more
// are refused.
const backlog = 128

// listener is a host's stream socket.
type listener struct {
	h    *Host
	addr netip.AddrPort // public
	in   chan *stream
	done chan struct{}
	once sync.Once
}

// Listen listens for streams on the host. network is "tcp" or "tcp4";
// address is as for ListenPacket. The context is not used.
func (h *Host) Listen(_ context.Context, network, address string) (net.Listener, error) {
	if network != "tcp" && network != "tcp4" {
		return nil, &net.OpError{Op: "listen", Net: network, Err: net.UnknownNetworkError(network)}
	}
	n := h.n
	n.mu.Lock()
	defer n.mu.Unlock()
	ap, err := h.bind(address, func(ap netip.AddrPort) bool { return n.listeners[ap] != nil })
	if err != nil {
		return nil, err
	}
	l := &listener{h: h, addr: ap, in: make(chan *stream, backlog), done: make(chan struct{})}
	n.listeners[ap] = l
	return l, nil
}

func (l *listener) Accept() (net.Conn, error) {
	select {
	case s := <-l.in:
		return s, nil
	case <-l.done:
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: net.ErrClosed}
	}
}

// Close stops listening; connections not yet accepted are reset.
func (l *listener) Close() error {
	l.once.Do(func() {
		n := l.h.n
		n.mu.Lock()
		delete(n.listeners, l.addr)
		n.mu.Unlock()
		close(l.done)
		for {
			select {
			case s := <-l.in:
				s.Close()
			default:
				return
			}
		}
	})
	return nil
}

func (l *listener) Addr() net.Addr {
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(l.h.local, l.addr.Port()))
}

// DialContext opens a stream to address (ip:port) from a free port of the
// host, taking a round trip (and a second more for each SYN lost). A host
// that is gone or behind NAT never answers: the dial waits until ctx ends,
// at most connectTimeout; a host with nothing listening refuses.
func (h *Host) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if network != "tcp" && network != "tcp4" {
		return nil, &net.OpError{Op: "dial", Net: network, Err: net.UnknownNetworkError(network)}
	}
	to, err := netip.ParseAddrPort(address)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	to = unmap(to)
	n := h.n
	opErr := func(err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(to), Err: err}
	}
	sleep := func(d time.Duration) error {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return opErr(ctx.Err())
		}
	}
	n.mu.RLock()
	dst := n.hosts[to.Addr()]
	l := n.listeners[to]
	n.mu.RUnlock()
	if h.dead.Load() || dst == nil || dst.dead.Load() || dst.nat {
		if err := sleep(connectTimeout); err != nil {
			return nil, err
		}
		return nil, opErr(os.ErrDeadlineExceeded)
	}
	oneWay := n.oneWay(h.addr, to.Addr())
	for n.lost() {
		if err := sleep(synRTO); err != nil {
			return nil, err
		}
	}
	if err := sleep(2 * oneWay); err != nil {
		return nil, err
	}
	if l == nil {
		return nil, opErr(syscall.ECONNREFUSED)
	}
	n.mu.Lock()
	from, err := h.bind(":0", func(ap netip.AddrPort) bool { return n.listeners[ap] != nil })
	n.mu.Unlock()
	if err != nil {
		return nil, opErr(err)
	}
	client, server := newStreams(h, from, dst, to, oneWay)
	select {
	case l.in <- server:
		return client, nil
	case <-l.done:
	default:
	}
	return nil, opErr(syscall.ECONNREFUSED)
}

// segment is data sent on a stream, readable from at on.
type segment struct {
	b  []byte
	at time.Time
}

// pipe is what the two ends of a stream share.
type pipe struct {
	mu     sync.Mutex
	oneWay time.Duration
}

// stream is one end of a stream between two hosts.
type stream struct {
	p     *pipe
	h     *Host
	local netip.AddrPort // public address and port, as the other end sees it
	peer  *stream

	// guarded by p.mu
	in       []segment // sent by peer, not yet read
	buffered int       // bytes in in
	last     time.Time // when in's last segment arrives
	eofAt    time.Time // when peer's close arrives; zero while open
	closed   bool

	readable chan struct{} // pinged when in or eofAt changes
	writable chan struct{} // pinged when peer reads (room in its window)
	rd, wd   deadline
}

func newStreams(a *Host, aAddr netip.AddrPort, b *Host, bAddr netip.AddrPort, oneWay time.Duration) (*stream, *stream) {
	p := &pipe{oneWay: oneWay}
	x := &stream{p: p, h: a, local: aAddr, readable: make(chan struct{}, 1), writable: make(chan struct{}, 1)}
	y := &stream{p: p, h: b, local: bAddr, readable: make(chan struct{}, 1), writable: make(chan struct{}, 1)}
	x.peer, y.peer = y, x
	for _, s := range []*stream{x, y} {
		s.rd.init()
		s.wd.init()
	}
	return x, y
}

func ping(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Read returns the data that has arrived, waiting for some.
func (s *stream) Read(b []byte) (int, error) {
	p := s.p
	p.mu.Lock()
	for {
		if s.closed {
			p.mu.Unlock()
			return 0, net.ErrClosed
		}
		select {
		case <-s.rd.wait():
			p.mu.Unlock()
			return 0, os.ErrDeadlineExceeded
		default:
		}
		now := time.Now()
		n := 0
		for len(s.in) > 0 && !s.in[0].at.After(now) && n < len(b) {
			c := copy(b[n:], s.in[0].b)
			n += c
			if s.in[0].b = s.in[0].b[c:]; len(s.in[0].b) == 0 {
				s.in[0] = segment{}
				s.in = s.in[1:]
			}
		}
		if n > 0 || len(b) == 0 {
			s.buffered -= n
			p.mu.Unlock()
			s.h.streamReceived.Add(int64(n))
			ping(s.peer.writable)
			return n, nil
		}
		var next time.Time
		switch {
		case len(s.in) > 0:
			next = s.in[0].at
		case !s.eofAt.IsZero() && !s.eofAt.After(now):
			p.mu.Unlock()
			return 0, io.EOF
		case !s.eofAt.IsZero():
			next = s.eofAt
		}
		p.mu.Unlock()
		var t *time.Timer
		var timer <-chan time.Time
		if !next.IsZero() {
			t = time.NewTimer(next.Sub(now))
			timer = t.C
		}
		select {
		case <-s.readable:
		case <-timer:
		case <-s.rd.wait():
		}
		if t != nil {
			t.Stop()
		}
		p.mu.Lock()
	}
}

// Write sends b: it returns once all of b is on its way, waiting while
// the other end holds a window of unread data. Data arrives after the
// host's uplink has sent it (HostConfig.UploadRate), a one-way delay, and
// a retransmission timeout more for a segment that lost a packet.
func (s *stream) Write(b []byte) (int, error) {
	p, n := s.p, s.h.n
	written := 0
	for len(b) > 0 {
		p.mu.Lock()
		if s.closed {
			p.mu.Unlock()
			return written, net.ErrClosed
		}
		if s.peer.closed {
			p.mu.Unlock()
			return written, &net.OpError{Op: "write", Net: "tcp", Addr: s.RemoteAddr(), Err: syscall.ECONNRESET}
		}
		select {
		case <-s.wd.wait():
			p.mu.Unlock()
			return written, os.ErrDeadlineExceeded
		default:
		}
		room := streamWindow - s.peer.buffered
		if room <= 0 {
			p.mu.Unlock()
			select {
			case <-s.writable:
			case <-s.wd.wait():
			}
			continue
		}
		k := min(len(b), room, segmentSize)
		now := time.Now()
		if s.h.dead.Load() || s.peer.h.dead.Load() {
			// Gone without a word: the data never arrives.
			p.mu.Unlock()
			written += k
			b = b[k:]
			continue
		}
		at := s.h.uplink(k, now).Add(p.oneWay)
		for range (k + mss - 1) / mss {
			if n.lost() {
				at = at.Add(max(minRTO, 4*p.oneWay))
				break
			}
		}
		if at.Before(s.peer.last) {
			at = s.peer.last
		}
		s.peer.last = at
		s.peer.in = append(s.peer.in, segment{b: append([]byte(nil), b[:k]...), at: at})
		s.peer.buffered += k
		p.mu.Unlock()
		s.h.streamSent.Add(int64(k))
		ping(s.peer.readable)
		written += k
		b = b[k:]
	}
	return written, nil
}

// Close closes this end: the other end reads what was sent before, then
// EOF, and its writes fail.
func (s *stream) Close() error {
	p := s.p
	p.mu.Lock()
	if s.closed {
		p.mu.Unlock()
		return nil
	}
	s.closed = true
	s.in, s.buffered = nil, 0
	at := time.Now().Add(p.oneWay)
	if at.Before(s.peer.last) {
		at = s.peer.last
	}
	if !s.h.dead.Load() {
		s.peer.eofAt = at
	}
	p.mu.Unlock()
	ping(s.readable)
	ping(s.writable)
	ping(s.peer.readable)
	ping(s.peer.writable)
	return nil
}

func (s *stream) LocalAddr() net.Addr {
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(s.h.local, s.local.Port()))
}

func (s *stream) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(s.peer.local) }

func (s *stream) SetDeadline(t time.Time) error {
	s.rd.set(t)
	s.wd.set(t)
	ping(s.readable)
	ping(s.writable)
	return nil
}

func (s *stream) SetReadDeadline(t time.Time) error {
	s.rd.set(t)
	ping(s.readable)
	return nil
}

func (s *stream) SetWriteDeadline(t time.Time) error {
	s.wd.set(t)
	ping(s.writable)
	return nil
}

var _ net.Conn = (*stream)(nil)
