package simnet

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"sort"
	"syscall"
	"testing"
	"time"
)

func hosts(t *testing.T, n *Network, hcs ...HostConfig) []*Host {
	t.Helper()
	var hs []*Host
	for _, hc := range hcs {
		h, err := n.NewHost(hc)
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	return hs
}

func listenPacket(t *testing.T, h *Host) net.PacketConn {
	t.Helper()
	c, err := h.ListenPacket("udp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestDatagrams: datagrams arrive after half the pair's round trip, from
// the sender's public address; a share is lost; a host behind NAT gets
// only answers; a killed host gets and sends nothing.
func TestDatagrams(t *testing.T) {
	n := New(Config{RTT: 40 * time.Millisecond, Loss: 0.05, Seed: 1})
	hs := hosts(t, n, HostConfig{}, HostConfig{}, HostConfig{NAT: true})
	a, b, behind := listenPacket(t, hs[0]), listenPacket(t, hs[1]), listenPacket(t, hs[2])

	const sent = 400
	start := time.Now()
	for i := range sent {
		if _, err := a.WriteTo([]byte{byte(i)}, b.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	got := 0
	buf := make([]byte, 64)
	for {
		// The first within a bound on a hang, the rest a second after the
		// one before (the round trip is 40 ms).
		b.SetReadDeadline(time.Now().Add(map[bool]time.Duration{true: 10 * time.Second, false: time.Second}[got == 0]))
		_, from, err := b.ReadFrom(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if got == 0 {
			if d := time.Since(start); d < n.oneWay(hs[0].Addr(), hs[1].Addr())*9/10 {
				t.Errorf("the first datagram arrived after %s, before the link's delay", d)
			}
		}
		if from.String() != a.LocalAddr().String() {
			t.Fatalf("from %s, want %s", from, a.LocalAddr())
		}
		got++
		if got == sent {
			break
		}
	}
	// 5% of 400: 20 expected; 4 standard deviations either side.
	if lost := sent - got; lost < 3 || lost > 40 {
		t.Errorf("%d of %d datagrams lost at 5%% loss", lost, sent)
	}

	// Behind NAT: b cannot reach it at its public address until it sent
	// to b.
	public := &net.UDPAddr{IP: hs[2].Addr().AsSlice(), Port: behind.LocalAddr().(*net.UDPAddr).Port}
	if behind.LocalAddr().(*net.UDPAddr).IP.Equal(public.IP) {
		t.Fatal("a host behind NAT sees its public address")
	}
	// received sends 20 datagrams and reports whether one arrived within
	// wait: a bound on a hang where one should, plenty (the round trip is
	// 40 ms) where none should.
	received := func(from, to net.PacketConn, addr net.Addr, wait time.Duration) bool {
		for range 20 {
			from.WriteTo([]byte("x"), addr)
		}
		to.SetReadDeadline(time.Now().Add(wait))
		defer to.SetReadDeadline(time.Time{})
		_, _, err := to.ReadFrom(buf)
		for drained := err; drained == nil; { // the 19 others
			to.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			_, _, drained = to.ReadFrom(buf)
		}
		return err == nil
	}
	if received(b, behind, public, time.Second) {
		t.Fatal("a host behind NAT took a datagram from a host it never sent to")
	}
	if !received(behind, b, b.LocalAddr(), 10*time.Second) {
		t.Fatal("a host behind NAT could not send")
	}
	if !received(b, behind, public, 10*time.Second) {
		t.Fatal("a host behind NAT did not get the answer of a host it sent to")
	}
	hs[1].Kill()
	if received(a, b, b.LocalAddr(), time.Second) || received(b, a, a.LocalAddr(), time.Second) {
		t.Fatal("a killed host still sends or receives")
	}
}

// TestRoundTrips: the round trips of many pairs spread as configured:
// their median near RTT, one pair in ten beyond 2.16 times it.
func TestRoundTrips(t *testing.T) {
	n := New(Config{Seed: 7})
	var hs []*Host
	for range 60 {
		h, err := n.NewHost(HostConfig{})
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	var rtts []time.Duration
	for i, a := range hs {
		for _, b := range hs[i+1:] {
			d := n.oneWay(a.Addr(), b.Addr())
			if d2 := n.oneWay(b.Addr(), a.Addr()); d2 < d*9/11 || d2 > d*11/9 {
				t.Fatalf("one way %s, the other %s", d, d2)
			}
			rtts = append(rtts, 2*d)
		}
	}
	sort.Slice(rtts, func(i, j int) bool { return rtts[i] < rtts[j] })
	median, p90 := rtts[len(rtts)/2], rtts[len(rtts)*9/10]
	t.Logf("%d pairs: median %s, p90 %s, max %s", len(rtts), median, p90, rtts[len(rtts)-1])
	if median < 75*time.Millisecond || median > 100*time.Millisecond {
		t.Errorf("median round trip %s, want about 84 ms (80 ms and 5%% of jitter)", median)
	}
	if p90 < 150*time.Millisecond || p90 > 220*time.Millisecond {
		t.Errorf("p90 round trip %s, want about 180 ms", p90)
	}
}

// TestStreams: what is written arrives whole and in order despite loss,
// then EOF; a host with nothing listening refuses; a host behind NAT or
// gone never answers; deadlines end reads and dials.
func TestStreams(t *testing.T) {
	n := New(Config{RTT: 20 * time.Millisecond, Loss: 0.03, UploadRate: 8 << 20})
	hs := hosts(t, n, HostConfig{}, HostConfig{}, HostConfig{NAT: true})
	l, err := hs[1].Listen(context.Background(), "tcp", ":6881")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := hs[1].Listen(context.Background(), "tcp", ":6881"); !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("a second listen on a port: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	data := make([]byte, 3<<20)
	rand.Read(data)
	done := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		if c.RemoteAddr().(*net.TCPAddr).IP.String() != hs[0].Addr().String() {
			done <- errors.New("the accepted stream is not from the dialler's address")
			return
		}
		_, err = io.Copy(c, bytes.NewReader(data))
		done <- err
	}()
	start := time.Now()
	c, err := hs[0].DialContext(ctx, "tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, not the %d written", len(got), len(data))
	}
	// 3 MiB at 8 MiB/s: at least 375 ms.
	if d := time.Since(start); d < 350*time.Millisecond {
		t.Errorf("3 MiB at 8 MiB/s took %s", d)
	}
	if s := hs[1].Stats(); s.StreamSent != int64(len(data)) {
		t.Errorf("the sender counted %d bytes sent", s.StreamSent)
	}

	if _, err := hs[0].DialContext(ctx, "tcp", hs[1].Addr().String()+":1"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial with nothing listening: %v", err)
	}
	nl, err := hs[2].Listen(ctx, "tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	public := hs[2].Addr().String() + ":" + portOf(nl.Addr())
	if _, err := hs[0].DialContext(short, "tcp", public); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("dial to a host behind NAT: %v", err)
	}

	// A read with nothing coming ends at its deadline.
	go func() {
		if c, err := l.Accept(); err == nil {
			defer c.Close()
			c.Read(make([]byte, 1))
		}
	}()
	c, err = hs[0].DialContext(ctx, "tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read past its deadline: %v", err)
	}
}

func portOf(a net.Addr) string {
	_, p, _ := net.SplitHostPort(a.String())
	return p
}
