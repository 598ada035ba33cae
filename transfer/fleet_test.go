package transfer

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/anacrolix/torrent"

	"github.com/relay-sh/relay/record"
)

// TestSwarmFetch: a fetch told of its release by the key's swarm
// (FetchRequest.Swarm), given no peer and no DHT, gets the release from
// the relay peer of the key it is connected to in another bundle's swarm.
func TestSwarmFetch(t *testing.T) {
	t.Parallel()
	onRecord := func(*record.SignedPacket) {}
	dir := t.TempDir()
	b2 := testBundle(t, dir, map[string]int64{"app": 300 << 10})
	s, b1 := seeder(t, map[string]int64{"app": 200 << 10}, Config{DataDir: dir, OnRecord: onRecord})
	if _, err := s.Seed(context.Background(), b2.Infohash); err != nil {
		t.Fatal(err)
	}
	l := newClient(t, Config{OnRecord: onRecord})
	ctx := fetchCtx(t, 60*time.Second)
	if _, err := l.Fetch(ctx, FetchRequest{Key: testKey(t), Release: b1.Release(testTime), Peers: peersOf(s)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the seeder to speak relay_record with the leecher", func() bool {
		return l.RecordPeersOf(testKey(t)) == 1
	})
	res, err := l.Fetch(ctx, FetchRequest{Key: testKey(t), Release: b2.Release(testTime), Swarm: true})
	if err != nil {
		t.Fatal(err)
	}
	checkFetched(t, b2, res)
}

// TestServeAnnouncers: of four relay peers of a key all connected to each
// other, two are chosen to announce a bundle they serve; one alone
// announces.
func TestServeAnnouncers(t *testing.T) {
	t.Parallel()
	onRecord := func(*record.SignedPacket) {}
	s, b := seeder(t, map[string]int64{"app": 200 << 10}, Config{OnRecord: onRecord})
	cs := []*Client{s}
	for range 3 {
		cs = append(cs, newClient(t, Config{OnRecord: onRecord}))
	}
	peers := peersOf(cs...)
	for _, l := range cs[1:] {
		if _, err := l.Fetch(fetchCtx(t, 60*time.Second), FetchRequest{Key: testKey(t), Release: b.Release(testTime), Peers: peers}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cs {
		connectPeers(t, c, b.Infohash, peers)
	}
	waitFor(t, 30*time.Second, "every peer to speak relay_record with the three others", func() bool {
		for _, c := range cs {
			if c.RecordPeersOf(testKey(t)) != 3 {
				return false
			}
		}
		return true
	})
	chosen := 0
	for _, c := range cs {
		if c.chosenAnnouncer(swarmOf(t, c, b.Infohash).bundleKey(), b.Infohash) {
			chosen++
		}
	}
	if chosen != announceShare {
		t.Errorf("%d of 4 connected peers would announce the bundle, want %d", chosen, announceShare)
	}
	// Alone, a peer announces what it serves.
	alone, ab := seeder(t, map[string]int64{"app": 100 << 10}, Config{OnRecord: onRecord})
	if !alone.chosenAnnouncer(swarmOf(t, alone, ab.Infohash).bundleKey(), ab.Infohash) {
		t.Error("a peer alone with its bundle would not announce it")
	}
}

// swarmOf returns bundle ih of c as its announcer sees it, on either
// engine.
func swarmOf(t *testing.T, c *Client, ih record.Infohash) swarmBundle {
	t.Helper()
	if c.w != nil {
		if b := c.w.bundle(ih); b != nil {
			return b
		}
	} else {
		c.mu.Lock()
		a := c.bundles[ih]
		c.mu.Unlock()
		if a != nil {
			return torrentSwarm{c, ih, a}
		}
	}
	t.Fatalf("the client does not hold bundle %s", ih)
	return nil
}

// connectPeers has c connect to peers in bundle ih, on either engine.
func connectPeers(t *testing.T, c *Client, ih record.Infohash, peers []netip.AddrPort) {
	t.Helper()
	switch b := swarmOf(t, c, ih).(type) {
	case torrentSwarm:
		c.addPeers(b.a.t, peers, torrent.PeerSourceDirect)
	case *wireBundle:
		c.w.mu.Lock()
		pt := b.t
		c.w.mu.Unlock()
		for _, p := range c.otherPeers(peers) {
			b.dial(pt, p, len(peers))
		}
	}
}
