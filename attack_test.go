package relay

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"
	"github.com/relay-sh/relay/dht"
	"github.com/relay-sh/relay/dht/localnet"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/transfer"
)

// The attacks of docs/spec/verification.md's chain, each run for real on a
// local network: a publisher seeding genuine releases, DHT nodes holding
// the attacker's records, a user who accepted a genuine release first.
// Each attack must be refused with an error that says which check failed,
// and leave the user's placed files and persisted state as they were.

// victim is a user who fetched and accepted release 1.0.0 of key.
type victim struct {
	t     *testing.T
	n     *testNet
	key   *signer.PrivateKey
	pub   *Client
	user  *Client
	out   string
	state []byte // the state file's bytes after 1.0.0 was accepted
	files map[string]string
}

func newVictim(t *testing.T, n *testNet, ctx context.Context, keyByte byte) *victim {
	t.Helper()
	v := &victim{t: t, n: n, key: testKey(t, keyByte), pub: n.client(false), user: n.client(true), out: t.TempDir()}
	v.publish(ctx, "stable", "1.0.0", false)
	res, err := v.user.Fetch(ctx, FetchOptions{Key: v.key.PublicKey(), Out: v.out})
	if err != nil || res.Release.Version.String() != "1.0.0" {
		t.Fatalf("genuine fetch: %v", err)
	}
	v.state, v.files = v.snapshot()
	if got := v.files["app_"+runtime.GOOS+"_"+runtime.GOARCH]; got != "app 1.0.0 for this platform" {
		t.Fatalf("installed program: %q", got)
	}
	return v
}

// moveTo reopens the user's data folder on the DHT node n, closing the
// user's client first (one client per data folder).
// networkHolding starts a network of 8 nodes that holds only p (an old
// packet: a network that lost the newer one) and returns a read-only node
// of it, closed when the test ends.
func networkHolding(t *testing.T, ctx context.Context, p *record.SignedPacket) *dht.Node {
	t.Helper()
	other := localnet.ForTest(t, localnet.Config{Nodes: 8})
	if st, err := other.Nodes[0].Store(ctx, p); err != nil || st.Acked == 0 {
		t.Fatalf("store the old packet: %+v %v", st, err)
	}
	node, err := other.Add(ctx, func(c *dht.Config) { c.ReadOnly = true })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	return node
}

func (v *victim) moveTo(ctx context.Context, n *dht.Node) {
	v.t.Helper()
	v.user.Close()
	c, err := Open(ctx, Config{DataDir: filepath.Dir(filepath.Dir(filepath.Dir(v.statePath()))), Network: n})
	if err != nil {
		v.t.Fatal(err)
	}
	v.t.Cleanup(func() { c.Close() })
	v.user = c
}

// restart closes the user's client and opens its data folder again on
// the same network, as a user's next run does: the new client holds no
// packet a peer told the old one of.
func (v *victim) restart() {
	v.t.Helper()
	dir := v.user.cfg.DataDir
	v.user.Close()
	v.user = v.n.clientIn(dir, true)
}

func (v *victim) statePath() string {
	return v.user.states.path(v.key.PublicKey(), "stable")
}

func (v *victim) snapshot() ([]byte, map[string]string) {
	v.t.Helper()
	st, err := os.ReadFile(v.statePath())
	if err != nil {
		v.t.Fatal(err)
	}
	files := map[string]string{}
	entries, _ := os.ReadDir(v.out)
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(v.out, e.Name()))
		files[e.Name()] = string(b)
	}
	return st, files
}

// unchanged fails unless the user's state file and placed files are as
// they were after 1.0.0 was accepted.
func (v *victim) unchanged() {
	v.t.Helper()
	st, files := v.snapshot()
	if !bytes.Equal(st, v.state) {
		v.t.Errorf("the state file changed:\n%s", st)
	}
	if len(files) != len(v.files) {
		v.t.Errorf("placed files %v, want %v", files, v.files)
	}
	for name, content := range v.files {
		if files[name] != content {
			v.t.Errorf("%s holds %q, want %q", name, files[name], content)
		}
	}
}

// publish publishes a genuine release through the publisher, who seeds it.
func (v *victim) publish(ctx context.Context, channel, version string, force bool) *Published {
	v.t.Helper()
	p, err := v.pub.Publish(ctx, PublishOptions{Key: v.key, Channel: channel, Version: record.MustParseVersion(version), Force: force,
		Sources: []transfer.Source{{Path: releaseDir(v.t, version)}}})
	if err != nil {
		v.t.Fatal(err)
	}
	return p
}

// store signs r into the key's current packet at seq (zero: just above
// the current one) and stores it in the network.
func (v *victim) store(ctx context.Context, r record.Release, seq int64) *record.SignedPacket {
	v.t.Helper()
	node := v.pub.Node()
	cur, _, err := node.Resolve(ctx, v.key.PublicKey())
	if err != nil {
		v.t.Fatal(err)
	}
	packet, err := record.SetRelease(v.key.PublicKey(), cur.Packet, r)
	if err != nil {
		v.t.Fatal(err)
	}
	if seq == 0 {
		seq = cur.Seq + 1
	}
	p, err := record.Sign(v.key, seq, packet)
	if err != nil {
		v.t.Fatal(err)
	}
	st, err := node.Store(ctx, p)
	if err != nil || st.Acked == 0 {
		v.t.Fatalf("store: %+v %v", st, err)
	}
	return p
}

// refused fetches and checks the refusal.
func (v *victim) refused(ctx context.Context, want error, message string) {
	v.t.Helper()
	_, err := v.user.Fetch(ctx, FetchOptions{Key: v.key.PublicKey(), Out: v.out})
	if !errors.Is(err, want) || !record.IsVerification(err) {
		v.t.Fatalf("fetch: %v, want %v", err, want)
	}
	if !strings.Contains(err.Error(), message) {
		v.t.Errorf("message %q does not say %q", err, message)
	}
	v.t.Logf("refused: %v", err)
	v.unchanged()
}

// watchRefuses runs a watch for a few checks and requires each to be an
// event of kind want, nothing installed.
func (v *victim) watchRefuses(ctx context.Context, want EventKind) {
	v.t.Helper()
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	events := make(chan Event, 16)
	done := make(chan error, 1)
	go func() {
		// NoServe: a watch that served its accepted release would join
		// that bundle's swarm, where the publisher tells it of the newest
		// genuine packet it holds (relay_record): a valid record from
		// elsewhere, not what the DHT alone gives.
		done <- v.user.Watch(wctx, WatchOptions{FetchOptions: FetchOptions{Key: v.key.PublicKey(), Out: v.out},
			Interval: 100 * time.Millisecond, NoServe: true, OnEvent: func(e Event) { events <- e }})
	}()
	for n := 0; n < 2; {
		e := <-events
		if e.Kind == EventSeeding {
			continue // it serves what it accepted
		}
		n++
		if e.Kind != want || (want != EventChecked && e.Err == nil) {
			v.t.Fatalf("watch event %s %s %v, want %s", e.Kind, e.Version, e.Err, want)
		}
	}
	stop()
	if err := <-done; err != nil {
		v.t.Fatal(err)
	}
	v.unchanged()
}

func TestAttacksRefused(t *testing.T) {
	n := newTestNet(t)
	ctx := ctxFor(t, 3*time.Minute)

	// A valid record whose manifest hash is not the bundle's manifest's.
	t.Run("manifest hash mismatch", func(t *testing.T) {
		v := newVictim(t, n, ctx, 31)
		p := v.publish(ctx, "beta", "2.0.0", false) // a bundle the publisher seeds
		r := p.Release
		r.Channel = "stable"
		r.Manifest[0] ^= 1
		v.store(ctx, r, 0)
		v.refused(ctx, record.ErrManifestMismatch, "manifest")
		v.watchRefuses(ctx, EventRefused)
	})

	// Endless data: a record that says the bundle is smaller than the
	// torrent is.
	t.Run("torrent larger than the record", func(t *testing.T) {
		v := newVictim(t, n, ctx, 32)
		p := v.publish(ctx, "beta", "2.0.0", false)
		r := p.Release
		r.Channel = "stable"
		r.Size--
		v.store(ctx, r, 0)
		v.refused(ctx, record.ErrManifestMismatch, "torrent is "+strconv.FormatInt(p.Release.Size, 10)+" bytes, the record says "+strconv.FormatInt(r.Size, 10))
	})

	// Mix-and-match: the stable record names the beta channel's bundle,
	// whose manifest says beta.
	t.Run("another channel's manifest", func(t *testing.T) {
		v := newVictim(t, n, ctx, 33)
		p := v.publish(ctx, "beta", "2.0.0", false)
		r := p.Release
		r.Channel = "stable"
		v.store(ctx, r, 0)
		v.refused(ctx, record.ErrManifestMismatch, "beta")
	})

	// Rollback: a newer packet, validly signed, with a lower version.
	t.Run("newer seq lower version", func(t *testing.T) {
		v := newVictim(t, n, ctx, 34)
		v.publish(ctx, "stable", "0.9.0", true)
		v.refused(ctx, record.ErrRollback, "version lower than the one accepted")
		v.watchRefuses(ctx, EventRefused)
	})

	// Rollback: the accepted packet is 2.0.0's; a network that lost it
	// (a fresh one) is given the older 1.0.0 packet back.
	t.Run("replay of an older packet", func(t *testing.T) {
		v := newVictim(t, n, ctx, 35)
		old, _, err := v.pub.Node().Resolve(ctx, v.key.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		v.publish(ctx, "stable", "2.0.0", false)
		res, err := v.user.Fetch(ctx, FetchOptions{Key: v.key.PublicKey(), Out: v.out})
		if err != nil || res.Release.Version.String() != "2.0.0" {
			t.Fatalf("fetch 2.0.0: %v", err)
		}
		v.state, v.files = v.snapshot()
		// The same data folder, on another network.
		v.moveTo(ctx, networkHolding(t, ctx, old))
		v.refused(ctx, record.ErrReplay, "older record than the one accepted")
	})

	// Fast-forward: a packet signed far in the future, which would lock
	// out every honest later one.
	t.Run("seq far in the future", func(t *testing.T) {
		v := newVictim(t, n, ctx, 36)
		p := v.publish(ctx, "beta", "2.0.0", false)
		r := p.Release
		r.Channel = "stable"
		v.store(ctx, r, time.Now().Add(48*time.Hour).UnixMicro())
		v.refused(ctx, record.ErrFutureSeq, "future")
	})

	// Indefinite freeze: only an expired record is found. Refused and
	// reported as stale; installed when explicitly allowed.
	t.Run("only an expired record", func(t *testing.T) {
		v := newVictim(t, n, ctx, 37)
		// The genuine 2.0.0, then its record signed again already expired:
		// what a mirror frozen long enough serves.
		p := v.publish(ctx, "stable", "2.0.0", false)
		r := p.Release
		r.Expires = time.Now().Add(-time.Minute).Truncate(time.Second)
		v.store(ctx, r, 0)
		// The user's client, connected to the publisher since it fetched
		// 1.0.0, was told of the genuine 2.0.0 packet (relay_record) and
		// would rightly install it: the user's next run knows only what
		// the DHT holds.
		v.restart()
		v.refused(ctx, record.ErrExpired, "expired")
		v.watchRefuses(ctx, EventStale)
		res, err := v.user.Fetch(ctx, FetchOptions{Key: v.key.PublicKey(), Out: v.out, AllowExpired: true})
		if err != nil || res.Release.Version.String() != "2.0.0" {
			t.Fatalf("fetch allowing expired: %v", err)
		}
	})

	// Arbitrary software: a DHT node next to the key's target answers
	// with a 9.0.0 packet signed by another key under the followed key,
	// with a seq above the genuine one. It is ignored: the user stays on
	// the genuine 1.0.0 and the answer is counted as invalid.
	t.Run("signed by another key", func(t *testing.T) {
		v := newVictim(t, n, ctx, 38)
		genuine, _, err := v.pub.Node().Resolve(ctx, v.key.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		r, err := record.FindRelease(v.key.PublicKey(), genuine.Packet, "stable")
		if err != nil {
			t.Fatal(err)
		}
		r.Version, r.Infohash = record.MustParseVersion("9.0.0"), record.Infohash{9}
		packet, err := record.SetRelease(v.key.PublicKey(), genuine.Packet, r)
		if err != nil {
			t.Fatal(err)
		}
		seq := genuine.Seq + 1000
		forged, err := record.Sign(testKey(t, 99), seq, packet)
		if err != nil {
			t.Fatal(err)
		}
		id := krpc.ID(record.Target(v.key.PublicKey()))
		id[19] ^= 1
		fake := localnet.ItemNode(t, id, krpc.Bep44Return{V: bencode.Bytes(strconv.Itoa(len(packet)) + ":" + string(packet)),
			K: v.key.PublicKey(), Sig: forged.Sig, Seq: &seq})
		// The user's node joins through the forger, so it is asked.
		node, err := dht.New(ctx, n.net.Config(func(c *dht.Config) {
			c.ReadOnly = true
			c.Bootstrap = append([]string{fake}, c.Bootstrap...)
		}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { node.Close() })
		if !slices.ContainsFunc(node.Server().Nodes(), func(ni krpc.NodeInfo) bool { return ni.ID == id }) {
			t.Fatal("the forging node is not in the routing table")
		}
		v.moveTo(ctx, node)
		res, err := v.user.Fetch(ctx, FetchOptions{Key: v.key.PublicKey(), Out: v.out})
		if err != nil || !res.UpToDate || res.Release.Version.String() != "1.0.0" {
			t.Fatalf("fetch: %+v %v", res, err)
		}
		if res.Resolve.Invalid == 0 {
			t.Fatalf("the forged answer was not counted: %+v", res.Resolve)
		}
		v.unchanged()
		v.watchRefuses(ctx, EventChecked)
	})
}
