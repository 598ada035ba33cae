package transfer

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// delayLink is a TCP relay that holds what passes through it for a
// one-way delay in each direction: a network with a round trip of twice
// the delay between a client and one peer, made in the process because
// this machine's kernel has no netem queueing discipline to delay
// packets. Its outgoing connections come from a loopback address of their
// own (from), on which no client listens, so that the peer exchange
// cannot hand the peer's listening address to others as a short cut: a
// peer learns of the client only at an address it cannot reach.
type delayLink struct {
	ln    net.Listener
	to    netip.AddrPort
	from  netip.Addr
	delay time.Duration
	wg    sync.WaitGroup
}

func newDelayLink(t testing.TB, to netip.AddrPort, from netip.Addr, delay time.Duration) *delayLink {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &delayLink{ln: ln, to: to, from: from, delay: delay}
	d.wg.Go(d.accept)
	t.Cleanup(func() {
		ln.Close()
		d.wg.Wait()
	})
	return d
}

// Addr is the address to give the client for its peer.
func (d *delayLink) Addr() netip.AddrPort {
	return d.ln.Addr().(*net.TCPAddr).AddrPort()
}

func (d *delayLink) accept() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		c, err := d.ln.Accept()
		if err != nil {
			return
		}
		conns.Go(func() {
			defer c.Close()
			dialer := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(d.from, 0))}
			p, err := dialer.DialContext(ctx, "tcp", d.to.String())
			if err != nil {
				return
			}
			defer p.Close()
			stop := context.AfterFunc(ctx, func() { c.Close(); p.Close() })
			defer stop()
			var both sync.WaitGroup
			both.Go(func() { delayCopy(p, c, d.delay) })
			both.Go(func() { delayCopy(c, p, d.delay) })
			both.Wait()
		})
	}
}

// delayCopy copies src to dst, each read written delay after it was read.
// It closes dst's writing side at src's end, and both at an error.
func delayCopy(dst, src net.Conn, delay time.Duration) {
	type chunk struct {
		b  []byte
		at time.Time
	}
	q := make(chan chunk, 256) // at most 256 reads held: TCP's window does the rest
	go func() {
		defer close(q)
		for {
			b := make([]byte, 64<<10)
			n, err := src.Read(b)
			if n > 0 {
				q <- chunk{b[:n], time.Now().Add(delay)}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range q {
		time.Sleep(time.Until(c.at))
		if _, err := dst.Write(c.b); err != nil {
			src.Close()
			for range q {
			}
			return
		}
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}

// TestDelayLink: what goes through a link arrives whole, a round trip
// later than it would.
func TestDelayLink(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c) // echo
	}()
	d := newDelayLink(t, ln.Addr().(*net.TCPAddr).AddrPort(), netip.MustParseAddr("127.0.2.1"), 25*time.Millisecond)
	c, err := net.Dial("tcp", d.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := make([]byte, 1<<20)
	for i := range msg {
		msg[i] = byte(i)
	}
	start := time.Now()
	go c.Write(msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	rtt := time.Since(start)
	if string(got) != string(msg) {
		t.Fatal("the echo differs from what was sent")
	}
	if rtt < 50*time.Millisecond {
		t.Errorf("echo of 1 MiB after %v, want at least the 50 ms round trip", rtt)
	}
	t.Logf("1 MiB echoed through a 25 ms link in %v", rtt)
}
