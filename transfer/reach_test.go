package transfer

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/relay-sh/relay/dht/localnet"
)

// TestSeedDialsPeersFromDHT: a seeder looks up the peers the DHT names for
// its bundle and dials them, not only waits for them: a peer that cannot
// be reached (behind NAT) is reached that way. The peer here only listens
// and announces itself; it never dials. The seeder's Reach names it.
func TestSeedDialsPeersFromDHT(t *testing.T) {
	t.Parallel()
	lnet := localnet.ForTest(t, localnet.Config{Nodes: 8})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, b := seeder(t, map[string]int64{"app": 64 << 10}, Config{DHT: addNode(ctx, t, lnet)})

	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	pn := addNode(ctx, t, lnet)
	peer := l.Addr().(*net.TCPAddr).AddrPort()
	if err := pn.Announce(ctx, b.Infohash, int(peer.Port())); err != nil {
		t.Fatal(err)
	}

	l.(*net.TCPListener).SetDeadline(time.Now().Add(30 * time.Second))
	conn, err := l.Accept()
	if err != nil {
		t.Fatalf("the seeder never dialled the peer the DHT names: %v", err)
	}
	defer conn.Close() // its handshake is encrypted (MSE) or not: either will do

	want := netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	waitFor(t, 10*time.Second, "Reach to name the peer dialled", func() bool {
		peers, _, _ := s.Reach(b.Infohash)
		for _, p := range peers {
			if p.Addr == want && !p.Incoming && p.State >= Dialed {
				return true
			}
		}
		return false
	})
}

// TestSeedLookupWait: a bundle seeded for a while looks for peers after
// a quarter of that time, from 1 s to 5 minutes; behind NAT, where no
// fetcher can dial in, at most 15 s apart.
func TestSeedLookupWait(t *testing.T) {
	for _, c := range []struct {
		age       time.Duration
		reachable bool
		want      time.Duration
	}{
		{0, true, time.Second},
		{2 * time.Second, true, time.Second},
		{8 * time.Second, true, 2 * time.Second},
		{time.Minute, true, 15 * time.Second},
		{24 * time.Hour, true, 5 * time.Minute},
		{8 * time.Second, false, 2 * time.Second},
		{24 * time.Hour, false, 15 * time.Second},
	} {
		if got := seedLookupWait(c.age, c.reachable); got != c.want {
			t.Errorf("seedLookupWait(%v, reachable %v) = %v, want %v", c.age, c.reachable, got, c.want)
		}
	}
}

// TestNATEager: a seeder behind NAT asks for new peers every natAsk for
// natEagerFor after it first seeds a bundle and after a lookup names a
// peer it had not seen, unless a peer with the whole bundle is connected
// (new peers find that one); otherwise, and whenever it is reachable
// (peers dial it), it waits for its next lookup.
func TestNATEager(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		name       string
		since      time.Time
		eagerUntil time.Time
		reachable  bool
		seeded     bool
		want       bool
	}{
		{"just seeded", now.Add(-time.Second), time.Time{}, false, false, true},
		{"seeded long ago", now.Add(-time.Hour), time.Time{}, false, false, false},
		{"a new peer lately", now.Add(-time.Hour), now.Add(time.Second), false, false, true},
		{"the wave is over", now.Add(-time.Hour), now.Add(-time.Second), false, false, false},
		{"reachable", now.Add(-time.Second), now.Add(time.Second), true, false, false},
		{"a seed connected", now.Add(-time.Second), now.Add(time.Second), false, true, false},
	} {
		if got := natEager(now, c.since, c.eagerUntil, c.reachable, c.seeded); got != c.want {
			t.Errorf("%s: natEager = %v, want %v", c.name, got, c.want)
		}
	}
}
