package relay

import (
	"errors"
	"testing"
	"time"

	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/transfer"
)

// TestRecordAheadOfClock: one publish from a machine whose clock ran a
// year ahead once made every later publish from a correct clock sign a
// year ahead too (seq = current + 1), without a word, and every watcher
// refused those records as future-dated; and seeders kept the record
// alive. Now publish refuses to build on it, naming the cause and the way
// out (AllowAhead for a machine whose own clock is behind), and a seeder
// does not store it again, so that nodes forget it within their item
// lifetime.
func TestRecordAheadOfClock(t *testing.T) {
	n := newTestNet(t)
	ctx := ctxFor(t, 2*time.Minute)
	key := testKey(t, 11)
	pk := key.PublicKey()
	r := record.Release{
		Channel: "stable", Version: record.MustParseVersion("1.0.0"),
		Infohash: record.Infohash{1}, Manifest: record.SHA256([]byte("1.0.0")), Size: 1,
		Expires: time.Now().Add(400 * 24 * time.Hour).Truncate(time.Second),
	}
	packet, err := record.SetRelease(pk, nil, r)
	if err != nil {
		t.Fatal(err)
	}
	ahead, err := record.Sign(key, time.Now().Add(365*24*time.Hour).UnixMicro(), packet)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := n.net.Nodes[0].Store(ctx, ahead); err != nil || st.Acked == 0 {
		t.Fatalf("store the record from a year ahead: %+v %v", st, err)
	}

	// A seeder following the key says why it does not store it again,
	// and does not.
	seeder := n.client(false)
	events, stop := startSeed(t, ctx, seeder, SeedOptions{Follow: []Follow{{Key: pk, Channel: "stable"}},
		Interval: time.Hour, Restore: 100 * time.Millisecond})
	for refused := false; !refused; {
		select {
		case e := <-events:
			t.Logf("seed event %s %v", e.Kind, e.Err)
			switch {
			case e.Kind == EventRestored:
				t.Fatal("the seeder stored the record from a year ahead again")
			case e.Kind == EventError && errors.Is(e.Err, ErrCurrentAhead):
				refused = true
			}
		case <-ctx.Done():
			t.Fatal("the seeder said nothing of the record from a year ahead")
		}
	}
	stop()

	pub := n.client(false)
	v2 := PublishOptions{Key: key, Version: record.MustParseVersion("2.0.0"), Sources: []transfer.Source{{Path: releaseDir(t, "2.0.0")}}}
	p, err := pub.Publish(ctx, v2)
	if !errors.Is(err, ErrCurrentAhead) {
		if p != nil {
			t.Fatalf("publish over a record from a year ahead: %v, seq %d (%s ahead), want ErrCurrentAhead", err, p.Packet.Seq, time.Until(p.Packet.Time()).Round(time.Hour))
		}
		t.Fatalf("publish over a record from a year ahead: %v, want ErrCurrentAhead", err)
	}
	t.Logf("publish: %v", err)
	v2.AllowAhead = true
	p, err = pub.Publish(ctx, v2)
	if err != nil {
		t.Fatal(err)
	}
	if p.Packet.Seq != ahead.Seq+1 {
		t.Errorf("with AllowAhead, seq %d, want one above the current %d", p.Packet.Seq, ahead.Seq)
	}
}
