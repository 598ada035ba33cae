package relay

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/relay-sh/relay/dht"
	"github.com/relay-sh/relay/httprelay"
	"github.com/relay-sh/relay/internal/relaytest"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/transfer"
)

// openBlocked opens a client whose DHT cannot be reached, with relays.
func openBlocked(t *testing.T, readOnly bool, relays ...string) *Client {
	t.Helper()
	c, err := Open(ctxFor(t, 30*time.Second), Config{
		DataDir:      t.TempDir(),
		Bootstrap:    []string{relaytest.SilentNode(t)},
		Listen:       "127.0.0.1:0",
		ReadOnly:     readOnly,
		Relays:       relays,
		RelayTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestRelaysWhereUDPIsBlocked: a client that reaches no DHT node fetches
// a release through an HTTP relay (the record) and its web seed (the
// bundle); a publisher that reaches no DHT node stores a release through
// the relay, into the DHT, where a client with no relay finds it; with the
// relay down too, a fetch says that neither path answered.
func TestRelaysWhereUDPIsBlocked(t *testing.T) {
	t.Parallel()
	n := newTestNet(t)
	ctx := ctxFor(t, 3*time.Minute)
	relayURL := relaytest.Relay(t, n.net.Nodes[0])
	key := testKey(t, 20)

	pubDir := t.TempDir()
	pub, err := Open(ctx, Config{DataDir: pubDir, Bootstrap: []string{n.net.Bootstrap.Addr().String()}, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	ws := relaytest.WebSeed(t, pubDir)
	if _, err := pub.Publish(ctx, PublishOptions{Key: key, Version: record.MustParseVersion("1.0.0"), WebSeeds: []string{ws},
		Sources: []transfer.Source{{Path: releaseDir(t, "1.0.0")}}}); err != nil {
		t.Fatal(err)
	}

	user := openBlocked(t, true, relayURL)
	out := t.TempDir()
	res, err := user.Fetch(ctx, FetchOptions{Key: key.PublicKey(), Out: out})
	if err != nil {
		t.Fatal(err)
	}
	if res.Release.Version.String() != "1.0.0" || res.Resolve.Answered != 0 || res.Relays.Held != 1 {
		t.Fatalf("fetched %s, %d DHT nodes answered, %d relays held it; want 1.0.0 from the relay alone",
			res.Release.Version, res.Resolve.Answered, res.Relays.Held)
	}
	got, _ := os.ReadFile(filepath.Join(out, "app_"+runtime.GOOS+"_"+runtime.GOARCH))
	if string(got) != "app 1.0.0 for this platform" {
		t.Fatalf("placed %q", got)
	}

	// A publisher behind the same wall: the relay stores it in the DHT.
	blockedPubDir := t.TempDir()
	blockedPub, err := Open(ctx, Config{DataDir: blockedPubDir, Bootstrap: []string{relaytest.SilentNode(t)}, Listen: "127.0.0.1:0", Relays: []string{relayURL}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { blockedPub.Close() })
	p2, err := blockedPub.Publish(ctx, PublishOptions{Key: key, Version: record.MustParseVersion("2.0.0"), WebSeeds: []string{relaytest.WebSeed(t, blockedPubDir)},
		Sources: []transfer.Source{{Path: releaseDir(t, "2.0.0")}}})
	if err != nil {
		t.Fatal(err)
	}
	if p2.RelaysStored != 1 || p2.Stats.Acked != 0 {
		t.Errorf("stored on %d relays and %d DHT nodes; want the relay alone", p2.RelaysStored, p2.Stats.Acked)
	}
	r, err := n.client(true).Resolve(ctx, key.PublicKey(), "stable")
	if err != nil || r.Release.Version.String() != "2.0.0" {
		t.Fatalf("a DHT client resolves %v, %v; want 2.0.0, stored through the relay", r, err)
	}
	// The publisher's earlier records are kept: it read 1.0.0's packet
	// through the relay before it signed.
	if r.Packet.Seq <= res.Packet.Seq {
		t.Errorf("seq %d not above the one it replaced, %d", r.Packet.Seq, res.Packet.Seq)
	}
	res, err = user.Fetch(ctx, FetchOptions{Key: key.PublicKey(), Out: out})
	if err != nil || res.Release.Version.String() != "2.0.0" {
		t.Fatalf("second fetch: %v, %v", res, err)
	}

	// No relay either: say so.
	lost := openBlocked(t, true, "http://127.0.0.1:1")
	_, err = lost.Fetch(ctx, FetchOptions{Key: key.PublicKey(), Out: t.TempDir()})
	if !errors.Is(err, ErrNoPath) || !errors.Is(err, dht.ErrNoNodes) || !errors.Is(err, httprelay.ErrUnreachable) {
		t.Fatalf("fetch with neither path: %v, want ErrNoPath", err)
	}
}

// TestRelayNoMoreTrustedThanDHT: a relay that answers an older packet of
// the key, or a forged newer one, does not hide the DHT's newer record.
func TestRelayNoMoreTrustedThanDHT(t *testing.T) {
	t.Parallel()
	n := newTestNet(t)
	ctx := ctxFor(t, 2*time.Minute)
	key := testKey(t, 21)
	pub := n.client(false)
	p1, err := pub.Publish(ctx, PublishOptions{Key: key, Version: record.MustParseVersion("1.0.0"), Sources: []transfer.Source{{Path: releaseDir(t, "1.0.0")}}})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := pub.Publish(ctx, PublishOptions{Key: key, Version: record.MustParseVersion("2.0.0"), Sources: []transfer.Source{{Path: releaseDir(t, "2.0.0")}}})
	if err != nil {
		t.Fatal(err)
	}
	answer := func(b []byte) string {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(b) }))
		t.Cleanup(s.Close)
		return s.URL
	}
	forged := p2.Packet.Body()
	forged[8] ^= 1
	forged[64+7]++ // a higher seq, signature unchanged
	c, err := Open(ctx, Config{DataDir: t.TempDir(), Bootstrap: []string{n.net.Bootstrap.Addr().String()}, Listen: "127.0.0.1:0", ReadOnly: true,
		Relays: []string{answer(p1.Packet.Body()), answer(forged)}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := c.Resolve(ctx, key.PublicKey(), "stable")
	if err != nil || r.Packet.Seq != p2.Packet.Seq {
		t.Fatalf("resolve: %v, %v; want the DHT's 2.0.0", r, err)
	}
	if r.Relays.Held != 1 || r.Relays.Invalid != 1 {
		t.Errorf("relay stats %+v: want one (older) packet, one invalid", r.Relays)
	}
}
