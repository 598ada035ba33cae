package transfer

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
)

// TestWireRecords: a seeder and a fetcher, on either engine each, speak
// relay_record in the bundle's swarm: each counts the other among its
// key's relay peers, a packet either shares reaches the other's
// OnRecord, the seeder would dial the fetcher at the port it listens on
// (swarmAddrs), and its Reach names the fetcher as connected.
func TestWireRecords(t *testing.T) {
	t.Parallel()
	for _, e := range [][2]Engine{{EngineWire, EngineTorrent}, {EngineTorrent, EngineWire}, {EngineWire, EngineWire}} {
		t.Run(fmt.Sprintf("%v seeder, %v fetcher", e[0], e[1]), func(t *testing.T) {
			t.Parallel()
			records(t, e[0], e[1])
		})
	}
}

func records(t *testing.T, seedEngine, fetchEngine Engine) {
	k, err := signer.NewPrivateKey(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	sGot, lGot := make(chan *record.SignedPacket, 8), make(chan *record.SignedPacket, 8)
	s, b := seeder(t, map[string]int64{"app": 200 << 10}, Config{Engine: seedEngine, OnRecord: func(p *record.SignedPacket) { sGot <- p }})
	l := newClient(t, Config{Engine: fetchEngine, OnRecord: func(p *record.SignedPacket) { lGot <- p }})
	if _, err := l.Fetch(fetchCtx(t, 60*time.Second), FetchRequest{Key: testKey(t), Release: b.Release(testTime), Peers: peersOf(s)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "both to speak relay_record", func() bool {
		return s.RecordPeersOf(testKey(t)) == 1 && l.RecordPeersOf(testKey(t)) == 1
	})
	if got := s.swarmAddrs(testKey(t)); !slices.Equal(got, peersOf(l)) {
		t.Errorf("the seeder's swarm addresses %v, want the fetcher's listening address %v", got, peersOf(l))
	}
	expect := func(who string, got chan *record.SignedPacket, want *record.SignedPacket) {
		t.Helper()
		select {
		case p := <-got:
			if p.Key != want.Key || p.Seq != want.Seq || string(p.Packet) != string(want.Packet) {
				t.Errorf("%s got packet seq %d, want seq %d", who, p.Seq, want.Seq)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s never got packet seq %d", who, want.Seq)
		}
	}
	for i, from := range []*Client{s, l, s} {
		p, err := record.Sign(k, int64(i+1), []byte{byte(i), 1, 2, 3})
		if err != nil {
			t.Fatal(err)
		}
		from.ShareRecord(p)
		if from == s {
			expect("the fetcher", lGot, p)
		} else {
			expect("the seeder", sGot, p)
		}
	}
	if n := s.RecordsDropped() + l.RecordsDropped(); n != 0 {
		t.Errorf("%d relay_record messages dropped between honest peers", n)
	}
	peers, _, ok := s.Reach(b.Infohash)
	if !ok || !slices.ContainsFunc(peers, func(r PeerReach) bool { return r.Incoming && r.State == Connected }) {
		t.Errorf("the seeder's Reach %v (%v) does not name the fetcher as connected", peers, ok)
	}
}
