package relay

import (
	"bufio"
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	pp "github.com/anacrolix/torrent/peer_protocol"

	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/transfer"
)

// TestPushInstalls: a watcher that checks the DHT once an hour installs a
// new release as soon as a peer of its swarm learns it (relay_record),
// and a hostile peer's forged, replayed, oversized and garbage messages
// change nothing.
func TestPushInstalls(t *testing.T) {
	n := newTestNet(t)
	ctx := ctxFor(t, 3*time.Minute)
	key := testKey(t, 41)

	// 1.0.0, installed by a watcher that checks every hour.
	pub := n.client(false)
	p1, err := pub.Publish(ctx, PublishOptions{Key: key, Version: record.MustParseVersion("1.0.0"),
		Sources: []transfer.Source{{Path: releaseDir(t, "1.0.0")}}})
	if err != nil {
		t.Fatal(err)
	}
	watcher := n.client(false)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	events := make(chan Event, 64)
	done := make(chan error, 2)
	go func() {
		done <- watcher.Watch(wctx, WatchOptions{FetchOptions: FetchOptions{Key: key.PublicKey(), Out: t.TempDir()},
			Interval: time.Hour, OnEvent: func(e Event) { events <- e }})
	}()
	awaitEvent(t, events, EventSeeding, "1.0.0")
	pub.Close()

	// A seeder that checks often gets 1.0.0 from the watcher, the one
	// peer left: the two are connected in 1.0.0's swarm.
	seeder := n.client(false)
	seeded := make(chan Event, 64)
	go func() {
		done <- seeder.Seed(wctx, SeedOptions{Follow: []Follow{{Key: key.PublicKey(), Channel: "stable"}},
			Interval: 300 * time.Millisecond, OnEvent: func(e Event) { seeded <- e }})
	}()
	awaitEvent(t, seeded, EventSeeding, "1.0.0")
	for watcher.tc.RecordPeers() == 0 {
		if !sleepCtx(ctx, 50*time.Millisecond) {
			t.Fatal("the watcher never had a peer that speaks relay_record")
		}
	}

	// 2.0.0: the seeder finds it in the DHT and tells the watcher, which
	// installs it from that packet, asking the DHT nothing.
	gets := watcher.Node().GetQueries()
	if gets == 0 {
		t.Fatal("the watcher's DHT node counted no get query for its first check")
	}
	pub2 := n.client(false)
	p2, err := pub2.Publish(ctx, PublishOptions{Key: key, Version: record.MustParseVersion("2.0.0"),
		Sources: []transfer.Source{{Path: releaseDir(t, "2.0.0")}}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	awaitEvent(t, events, EventInstalled, "2.0.0")
	t.Logf("the watcher (checking the DHT hourly) installed 2.0.0 %s after it was published", time.Since(start).Round(time.Millisecond))
	if got := watcher.Node().GetQueries(); got != gets {
		t.Errorf("the watcher sent %d DHT get queries to install a pushed release, want none", got-gets)
	}

	// A hostile peer in 2.0.0's swarm.
	st, err := watcher.State(key.PublicKey(), "stable")
	if err != nil || st.Version.String() != "2.0.0" {
		t.Fatalf("state %+v, %v", st, err)
	}
	old := watcher.tc.RecordsDropped()
	addr, err := watcher.PeerAddr()
	if err != nil {
		t.Fatal(err)
	}
	forged := *p2.Packet
	forged.Seq += 1_000_000
	oversized, err := record.Sign(key, p2.Packet.Seq+2_000_000, p2.Packet.Packet)
	if err != nil {
		t.Fatal(err)
	}
	big := append(transfer.EncodeRecord(oversized), make([]byte, 200)...)
	other, err := record.Sign(testKey(t, 42), p2.Packet.Seq+3_000_000, p2.Packet.Packet)
	if err != nil {
		t.Fatal(err)
	}
	msgs := [][]byte{
		transfer.EncodeRecord(&forged),   // a signature that does not match
		transfer.EncodeRecord(st.Packet), // 2.0.0 again
		transfer.EncodeRecord(p1.Packet), // replayed: 1.0.0's, older
		big,                              // over MaxRecordMessage
		[]byte("garbage, garbage"),       // not a record
		transfer.EncodeRecord(other),     // another key's, not this swarm's
	}
	hostileRecords(t, ctx, addr.String(), p2.Release.Infohash, msgs)
	for watcher.tc.RecordsDropped() < old+int64(len(msgs)) {
		if !sleepCtx(ctx, 50*time.Millisecond) {
			t.Fatalf("%d of %d hostile messages dropped", watcher.tc.RecordsDropped()-old, len(msgs))
		}
	}
	if st2, err := watcher.State(key.PublicKey(), "stable"); err != nil || st2.Seq != st.Seq || st2.Version.String() != "2.0.0" {
		t.Fatalf("state changed: %+v, %v", st2, err)
	}
	if got := watcher.pushes.get(key.PublicKey()); got.Seq != p2.Packet.Seq {
		t.Fatalf("the watcher holds seq %d, want %d", got.Seq, p2.Packet.Seq)
	}
	stop()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	for len(events) > 0 {
		if e := <-events; e.Kind == EventInstalled || e.Kind == EventRefused {
			t.Fatalf("after the hostile messages: %s %s %v", e.Kind, e.Version, e.Err)
		}
	}
}

func awaitEvent(t *testing.T, events <-chan Event, kind EventKind, version string) {
	t.Helper()
	timeout := time.After(2 * time.Minute)
	for {
		select {
		case e := <-events:
			t.Logf("event %s %s %v", e.Kind, e.Version, e.Err)
			if e.Kind == kind && e.Version.String() == version {
				return
			}
		case <-timeout:
			t.Fatalf("no %s %s", kind, version)
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// hostileRecords connects to addr in ih's swarm as a peer that speaks
// relay_record, and sends each message.
func hostileRecords(t *testing.T, ctx context.Context, addr string, ih record.Infohash, msgs [][]byte) {
	t.Helper()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Minute))
	h := metainfo.Hash(ih)
	if _, err := pp.Handshake(ctx, conn, &h, [20]byte{'-', 'X', 'X'}, pp.NewPeerExtensionBytes(pp.ExtensionBitLtep)); err != nil {
		t.Fatal(err)
	}
	hs, err := bencode.Marshal(pp.ExtendedHandshakeMessage{M: map[pp.ExtensionName]pp.ExtensionNumber{transfer.RecordExtension: 9}})
	if err != nil {
		t.Fatal(err)
	}
	write := func(m pp.Message) {
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	write(pp.Message{Type: pp.Extended, ExtendedID: pp.HandshakeExtendedID, ExtendedPayload: hs})
	d := pp.Decoder{R: bufio.NewReader(conn), MaxLength: 1 << 20}
	var id pp.ExtensionNumber
	for id == 0 {
		var m pp.Message
		if err := d.Decode(&m); err != nil {
			t.Fatalf("before the watcher's extended handshake: %v", err)
		}
		if m.Type == pp.Extended && m.ExtendedID == pp.HandshakeExtendedID {
			var theirs pp.ExtendedHandshakeMessage
			if err := bencode.Unmarshal(m.ExtendedPayload, &theirs); err != nil {
				t.Fatal(err)
			}
			if id = theirs.M[transfer.RecordExtension]; id == 0 {
				t.Fatalf("the watcher does not offer %s: %v", transfer.RecordExtension, theirs.M)
			}
		}
	}
	for _, b := range msgs {
		// Within the rate a peer may send at, so that each is dropped for
		// what it is.
		write(pp.Message{Type: pp.Extended, ExtendedID: id, ExtendedPayload: b})
		time.Sleep(400 * time.Millisecond)
	}
}

// TestPushWakesSeeder: a seeder that checks the DHT once an hour fetches
// and serves a followed key's new release as soon as a peer of its swarm
// tells it of it.
func TestPushWakesSeeder(t *testing.T) {
	n := newTestNet(t)
	ctx := ctxFor(t, 3*time.Minute)
	key := testKey(t, 43)
	follow := []Follow{{Key: key.PublicKey(), Channel: "stable"}}

	pub := n.client(false)
	if _, err := pub.Publish(ctx, PublishOptions{Key: key, Version: record.MustParseVersion("1.0.0"),
		Sources: []transfer.Source{{Path: releaseDir(t, "1.0.0")}}}); err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 2)
	slow := n.client(false)
	events := make(chan Event, 64)
	go func() {
		done <- slow.Seed(sctx, SeedOptions{Follow: follow, Interval: time.Hour, OnEvent: func(e Event) { events <- e }})
	}()
	awaitEvent(t, events, EventSeeding, "1.0.0")
	pub.Close()

	// A seeder that checks often gets 1.0.0 from the slow one.
	fast := n.client(false)
	seeded := make(chan Event, 64)
	go func() {
		done <- fast.Seed(sctx, SeedOptions{Follow: follow, Interval: 300 * time.Millisecond, OnEvent: func(e Event) { seeded <- e }})
	}()
	awaitEvent(t, seeded, EventSeeding, "1.0.0")

	pub2 := n.client(false)
	if _, err := pub2.Publish(ctx, PublishOptions{Key: key, Version: record.MustParseVersion("2.0.0"),
		Sources: []transfer.Source{{Path: releaseDir(t, "2.0.0")}}}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	awaitEvent(t, events, EventSeeding, "2.0.0")
	t.Logf("the seeder (checking the DHT hourly) served 2.0.0 %s after it was published", time.Since(start).Round(time.Millisecond))
	stop()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// TestPushBackoff: a watcher with a peer that takes relay_record messages
// in its release's swarm checks the DHT PushBackoff times less often; one
// that serves nothing (no such peer) keeps its interval.
func TestPushBackoff(t *testing.T) {
	n := newTestNet(t)
	ctx := ctxFor(t, 3*time.Minute)
	key := testKey(t, 44)
	pub := n.client(false)
	if _, err := pub.Publish(ctx, PublishOptions{Key: key, Version: record.MustParseVersion("1.0.0"),
		Sources: []transfer.Source{{Path: releaseDir(t, "1.0.0")}}}); err != nil {
		t.Fatal(err)
	}
	const interval = 400 * time.Millisecond
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 3)
	var checks [2]atomic.Int64 // EventChecked of the serving watcher, and of the other
	watch := func(c *Client, noServe bool, count *atomic.Int64, events chan<- Event) {
		done <- c.Watch(wctx, WatchOptions{FetchOptions: FetchOptions{Key: key.PublicKey(), Out: t.TempDir()},
			Interval: interval, NoServe: noServe, OnEvent: func(e Event) {
				if e.Kind == EventChecked {
					count.Add(1)
				}
				select {
				case events <- e:
				default:
				}
			}})
	}
	serving, quiet := n.client(false), n.client(false)
	events := make(chan Event, 256)
	go watch(serving, false, &checks[0], events)
	go watch(quiet, true, &checks[1], make(chan Event))
	awaitEvent(t, events, EventSeeding, "1.0.0")
	pub.Close()

	// A seeder gets 1.0.0 from the serving watcher: the two are
	// connected.
	seeder := n.client(false)
	go func() {
		done <- seeder.Seed(wctx, SeedOptions{Follow: []Follow{{Key: key.PublicKey(), Channel: "stable"}}, Interval: time.Hour})
	}()
	for serving.PushPeers(key.PublicKey()) == 0 {
		if !sleepCtx(ctx, 50*time.Millisecond) {
			t.Fatal("the watcher never had a peer that speaks relay_record")
		}
	}
	before := [2]int64{checks[0].Load(), checks[1].Load()}
	const window = 8 * time.Second
	sleepCtx(ctx, window)
	got := [2]int64{checks[0].Load() - before[0], checks[1].Load() - before[1]}
	t.Logf("DHT checks in %s at a %s interval: %d with a relay_record peer, %d without", window, interval, got[0], got[1])
	// Each wait is at least half the interval, PushBackoff times over.
	if most := int64(window/(PushBackoff*interval/2)) + 1; got[0] > most {
		t.Errorf("the watcher with a relay_record peer checked the DHT %d times in %s, want at most %d", got[0], window, most)
	}
	if serving.PushPeers(key.PublicKey()) == 0 {
		t.Error("the watcher lost its peer during the count")
	}
	stop()
	for range 3 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// TestPushDelegated: a root that delegates to a release key. A watcher
// following the root, checking the DHT hourly, installs the release key's
// new release as soon as a seeder of its swarm tells it of the release
// key's packet, checked against the root's delegation, asking the DHT
// nothing.
func TestPushDelegated(t *testing.T) {
	n := newTestNet(t)
	ctx := ctxFor(t, 3*time.Minute)
	root, rel := testKey(t, 45), testKey(t, 46)
	pub := n.client(false)
	delegate(t, ctx, pub, root, record.Delegation{Keys: delegates(rel)})
	publishAs(t, ctx, pub, root.PublicKey(), rel, "1.0.0")
	follow := []Follow{{Key: root.PublicKey(), Channel: "stable"}}

	watcher := n.client(false)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	events := make(chan Event, 256)
	done := make(chan error, 2)
	go func() {
		done <- watcher.Watch(wctx, WatchOptions{FetchOptions: FetchOptions{Key: root.PublicKey(), Out: t.TempDir()},
			Interval: time.Hour, OnEvent: func(e Event) { events <- e }})
	}()
	awaitEvent(t, events, EventSeeding, "1.0.0")
	pub.Close()
	seeder := n.client(false)
	seeded := make(chan Event, 256)
	go func() {
		done <- seeder.Seed(wctx, SeedOptions{Follow: follow, Interval: 300 * time.Millisecond, OnEvent: func(e Event) { seeded <- e }})
	}()
	awaitEvent(t, seeded, EventSeeding, "1.0.0")
	for watcher.PushPeers(root.PublicKey()) == 0 {
		if !sleepCtx(ctx, 50*time.Millisecond) {
			t.Fatal("the watcher never had a peer that speaks relay_record")
		}
	}

	gets := watcher.Node().GetQueries()
	pub2 := n.client(false)
	publishAs(t, ctx, pub2, root.PublicKey(), rel, "2.0.0")
	start := time.Now()
	awaitEvent(t, events, EventInstalled, "2.0.0")
	t.Logf("the watcher (checking the DHT hourly) installed the release key's 2.0.0 %s after it was published", time.Since(start).Round(time.Millisecond))
	if got := watcher.Node().GetQueries(); got != gets {
		t.Errorf("the watcher sent %d DHT get queries to install a pushed release, want none", got-gets)
	}
	st, err := watcher.State(root.PublicKey(), "stable")
	if err != nil || st.Version.String() != "2.0.0" || len(st.Signers) != 1 || st.Signers[0] != rel.PublicKey() {
		t.Fatalf("state %+v, %v", st, err)
	}
	stop()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
