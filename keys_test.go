package relay

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/transfer"
)

// Roots, release keys, rotation, revocation and thresholds
// (docs/spec/keys.md), each on a real local network: root packets signed
// "offline" here and stored by a client without the root key, releases
// published and seeded by release keys, users who follow the root.

// delegate signs d with root at the clock (as `relay delegate` does on an
// offline machine) and stores the packet through c, which has no key.
func delegate(t *testing.T, ctx context.Context, c *Client, root *signer.PrivateKey, d record.Delegation) *record.SignedPacket {
	t.Helper()
	if d.Expires.IsZero() {
		d.Expires = time.Now().Add(90 * 24 * time.Hour).Truncate(time.Second)
	}
	if d.Threshold == 0 && len(d.Keys) > 0 {
		d.Threshold = 1
	}
	packet, err := record.SetDelegation(root.PublicKey(), nil, d)
	if err != nil {
		t.Fatal(err)
	}
	p, err := record.Sign(root, record.NextSeq(time.Now(), 0), packet)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := c.Store(ctx, p); err != nil || n == 0 {
		t.Fatalf("store the delegation: %d nodes, %v", n, err)
	}
	return p
}

func delegates(keys ...*signer.PrivateKey) []record.Delegate {
	var out []record.Delegate
	for _, k := range keys {
		out = append(out, record.Delegate{Key: k.PublicKey()})
	}
	return out
}

// publishAs publishes version for root from a fresh release folder with key, at a
// fixed time of publication, so that two keys publishing the same version
// make the same bundle (a reproducible build on two machines).
func publishAs(t *testing.T, ctx context.Context, c *Client, root signer.PublicKey, key *signer.PrivateKey, version string) *Published {
	t.Helper()
	p, err := c.Publish(ctx, PublishOptions{Key: key, Version: record.MustParseVersion(version),
		Published: time.Unix(1796601600, 0), Root: root, Sources: []transfer.Source{{Path: fixedReleaseDir(t, version)}}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// fixedReleaseDir is releaseDir with the same file times every call.
func fixedReleaseDir(t *testing.T, version string) string {
	dir := releaseDir(t, version)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		os.Chtimes(filepath.Join(dir, e.Name()), time.Unix(1796601600, 0), time.Unix(1796601600, 0))
	}
	return dir
}

func placedApp(t *testing.T, out string) string {
	b, _ := os.ReadFile(filepath.Join(out, "app_"+runtime.GOOS+"_"+runtime.GOARCH))
	return string(b)
}

// TestDelegatedRelease: a root names a release key; a user following the
// root installs what the release key publishes, and a release the root's
// own packet or a key it never named carries counts for nothing.
func TestDelegatedRelease(t *testing.T) {
	n := newTestNet(t)
	ctx := ctxFor(t, 2*time.Minute)
	root, rel, stranger := testKey(t, 40), testKey(t, 41), testKey(t, 42)
	pub := n.client(false)
	delegate(t, ctx, pub, root, record.Delegation{Keys: delegates(rel)})
	publishAs(t, ctx, pub, root.PublicKey(), rel, "1.0.0")
	publishAs(t, ctx, pub, root.PublicKey(), stranger, "9.0.0")

	user := n.client(false)
	out := t.TempDir()
	res, err := user.Fetch(ctx, FetchOptions{Key: root.PublicKey(), Out: out})
	if err != nil {
		t.Fatal(err)
	}
	if res.Release.Version.String() != "1.0.0" || !slices.Equal(res.Signers, []signer.PublicKey{rel.PublicKey()}) || res.Delegation == nil {
		t.Fatalf("fetched %s signed by %v", res.Release.Version, res.Signers)
	}
	if got := placedApp(t, out); got != "app 1.0.0 for this platform" {
		t.Fatalf("placed %q", got)
	}
	st, err := user.State(root.PublicKey(), "stable")
	if err != nil || !slices.Equal(st.Signers, []signer.PublicKey{rel.PublicKey()}) {
		t.Fatalf("state %+v, %v", st, err)
	}
	ch, ok, err := user.states.loadChain(root.PublicKey())
	if err != nil || !ok || ch.Root != root.PublicKey() || ch.Packet == nil {
		t.Fatalf("chain %+v, %v, %v", ch, ok, err)
	}
	// Resolve says the same, with no state.
	r, err := n.client(true).Resolve(ctx, root.PublicKey(), "stable")
	if err != nil || r.Release.Version.String() != "1.0.0" || r.Delegation == nil {
		t.Fatalf("resolve: %+v, %v", r, err)
	}
	// The release key signs a delegation naming the stranger into its own
	// packet, beside its release: a user following the root reads the
	// delegation only from the root's packet.
	forged := record.Delegation{Keys: delegates(stranger), Threshold: 1, Expires: time.Now().Add(time.Hour).Truncate(time.Second)}
	if _, _, err := pub.Node().Publish(ctx, rel, func(cur *record.SignedPacket) ([]byte, error) {
		return record.SetDelegation(rel.PublicKey(), cur.Packet, forged)
	}); err != nil {
		t.Fatal(err)
	}
	res, err = user.Fetch(ctx, FetchOptions{Key: root.PublicKey(), Out: out})
	if err != nil || !res.UpToDate || res.Release.Version.String() != "1.0.0" {
		t.Fatalf("after the stranger's delegation: %v, %v", res, err)
	}
}

// TestTheftRevocation is the theft of issue 18: a thief publishes with a
// stolen release key; the root revokes it and names a new one. A watcher
// that had not yet installed the thief's release refuses it; one that had
// is told, at every check, until a release above the thief's replaces it.
// A replay of the older delegation (which did not revoke the key), on a
// network that holds nothing newer, is refused by a watcher that saw the
// newer.
func TestTheftRevocation(t *testing.T) {
	n := newTestNet(t)
	ctx := ctxFor(t, 3*time.Minute)
	root, stolen, fresh := testKey(t, 50), testKey(t, 51), testKey(t, 52)
	pub := n.client(false)
	oldDelegation := delegate(t, ctx, pub, root, record.Delegation{Keys: delegates(stolen)})
	publishAs(t, ctx, pub, root.PublicKey(), stolen, "1.0.0")

	early, late := n.client(false), n.client(false)
	earlyOut, lateOut := t.TempDir(), t.TempDir()
	for _, c := range []*Client{early, late} {
		if _, err := c.Fetch(ctx, FetchOptions{Key: root.PublicKey(), Out: map[*Client]string{early: earlyOut, late: lateOut}[c]}); err != nil {
			t.Fatal(err)
		}
	}
	// The thief publishes 2.0.0 with the stolen key; one watcher installs it.
	thief := n.client(false)
	publishAs(t, ctx, thief, root.PublicKey(), stolen, "2.0.0")
	if res, err := early.Fetch(ctx, FetchOptions{Key: root.PublicKey(), Out: earlyOut}); err != nil || res.Release.Version.String() != "2.0.0" {
		t.Fatalf("the thief's release: %v, %v", res, err)
	}
	// The root revokes the stolen key and names a fresh one, which signs
	// 1.0.0 again (the same bundle).
	delegate(t, ctx, pub, root, record.Delegation{Keys: delegates(fresh), Revoked: []signer.PublicKey{stolen.PublicKey()}})
	publishAs(t, ctx, pub, root.PublicKey(), fresh, "1.0.0")

	// The watcher that had not installed it refuses it: 1.0.0 stays.
	res, err := late.Fetch(ctx, FetchOptions{Key: root.PublicKey(), Out: lateOut})
	if err != nil || !res.UpToDate || res.Release.Version.String() != "1.0.0" {
		t.Fatalf("late watcher: %+v, %v", res, err)
	}
	if got := placedApp(t, lateOut); got != "app 1.0.0 for this platform" {
		t.Fatalf("late watcher placed %q", got)
	}
	// The one that had is told, by fetch and by watch.
	_, err = early.Fetch(ctx, FetchOptions{Key: root.PublicKey(), Out: earlyOut})
	if !errors.Is(err, ErrRevokedInstall) || !errors.Is(err, record.ErrRevoked) {
		t.Fatalf("early watcher: %v", err)
	}
	t.Logf("early watcher: %v", err)
	wctx, stop := context.WithCancel(ctx)
	events := make(chan Event, 16)
	done := make(chan error, 1)
	go func() {
		done <- early.Watch(wctx, WatchOptions{FetchOptions: FetchOptions{Key: root.PublicKey(), Out: earlyOut}, Interval: 200 * time.Millisecond,
			OnEvent: func(e Event) { events <- e }})
	}()
	// Serving what it holds (EventSeeding) aside, the first event says so.
	for e := range events {
		if e.Kind == EventSeeding {
			continue
		}
		if e.Kind != EventRevoked || e.Version.String() != "2.0.0" {
			t.Fatalf("watch event %s %s: %v", e.Kind, e.Version, e.Err)
		}
		break
	}
	// The provider publishes above the thief's version: it replaces it.
	publishAs(t, ctx, pub, root.PublicKey(), fresh, "2.0.1")
	for e := range events {
		if e.Kind == EventInstalled {
			if e.Version.String() != "2.0.1" {
				t.Fatalf("installed %s", e.Version)
			}
			break
		}
		if e.Kind != EventRevoked && e.Kind != EventSeeding && e.Kind != EventFound {
			t.Fatalf("watch event %s: %v", e.Kind, e.Err)
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := placedApp(t, earlyOut); got != "app 2.0.1 for this platform" {
		t.Fatalf("early watcher placed %q", got)
	}

	// Replay: a network that holds only the older delegation (and the
	// thief's record) shows it to the late watcher, which saw the newer.
	node := networkHolding(t, ctx, oldDelegation)
	late.Close()
	moved, err := Open(ctx, Config{DataDir: late.cfg.DataDir, Network: node})
	if err != nil {
		t.Fatal(err)
	}
	defer moved.Close()
	if _, err := moved.Fetch(ctx, FetchOptions{Key: root.PublicKey(), Out: lateOut}); !errors.Is(err, record.ErrReplay) {
		t.Fatalf("replayed delegation: %v", err)
	}
	if got := placedApp(t, lateOut); got != "app 1.0.0 for this platform" {
		t.Fatalf("after the replay, placed %q", got)
	}
}

// TestThreshold: 2 of 3 release keys. One signature is not enough; two
// keys signing different manifests are refused; any two of the three
// suffice.
func TestThreshold(t *testing.T) {
	n := newTestNet(t)
	ctx := ctxFor(t, 3*time.Minute)
	root, a, b, c3 := testKey(t, 60), testKey(t, 61), testKey(t, 62), testKey(t, 63)
	pub := n.client(false)
	delegate(t, ctx, pub, root, record.Delegation{Keys: delegates(a, b, c3), Threshold: 2})
	user := n.client(false)
	out := t.TempDir()
	fetch := func() (*FetchResult, error) {
		return user.Fetch(ctx, FetchOptions{Key: root.PublicKey(), Out: out})
	}

	publishAs(t, ctx, pub, root.PublicKey(), a, "1.0.0")
	if _, err := fetch(); !errors.Is(err, record.ErrThreshold) {
		t.Fatalf("one signature: %v", err)
	}
	// b builds something else under the same version.
	if _, err := pub.Publish(ctx, PublishOptions{Key: b, Version: record.MustParseVersion("1.0.0"), Notes: "another build", Root: root.PublicKey(),
		Published: time.Unix(1796601600, 0), Sources: []transfer.Source{{Path: fixedReleaseDir(t, "1.0.0")}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := fetch(); !errors.Is(err, record.ErrThreshold) {
		t.Fatalf("two different manifests: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "README")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a refused release placed files")
	}
	// c3 co-signs a's record: a and c3 suffice.
	if _, _, err := pub.Cosign(ctx, CosignOptions{Key: c3, Root: root.PublicKey(), Version: record.MustParseVersion("1.0.0")}); err == nil {
		t.Fatal("cosign signed while two records of 1.0.0 disagree")
	}
	publishAs(t, ctx, pub, root.PublicKey(), c3, "1.0.0")
	res, err := fetch()
	if err != nil || res.Release.Version.String() != "1.0.0" || len(res.Signers) != 2 {
		t.Fatalf("a and c: %+v, %v", res, err)
	}
	// 1.1.0 by b and c3 (a reproducible build on one, a co-signature on
	// the other); then 1.2.0 by a and b.
	publishAs(t, ctx, pub, root.PublicKey(), b, "1.1.0")
	if _, _, err := pub.Cosign(ctx, CosignOptions{Key: c3, Root: root.PublicKey(), Version: record.MustParseVersion("1.1.0")}); err != nil {
		t.Fatal(err)
	}
	if res, err := fetch(); err != nil || res.Release.Version.String() != "1.1.0" {
		t.Fatalf("b and c: %+v, %v", res, err)
	}
	publishAs(t, ctx, pub, root.PublicKey(), a, "1.2.0")
	publishAs(t, ctx, pub, root.PublicKey(), b, "1.2.0")
	if res, err := fetch(); err != nil || res.Release.Version.String() != "1.2.0" {
		t.Fatalf("a and b: %+v, %v", res, err)
	}
	if got := placedApp(t, out); got != "app 1.2.0 for this platform" {
		t.Fatalf("placed %q", got)
	}
	// A key the delegation does not name cannot co-sign.
	if _, _, err := pub.Cosign(ctx, CosignOptions{Key: testKey(t, 64), Root: root.PublicKey(), Version: record.MustParseVersion("1.2.0")}); !errors.Is(err, record.ErrThreshold) {
		t.Fatalf("cosign by a stranger: %v", err)
	}
}

// TestRootRotation: the root announces a successor, which names its own
// release key; that successor is replaced in turn. A watcher walks the
// chain, persists where it is, and from then on starts there: the old
// roots' packets no longer matter to it. A delegation past its expiry
// (a freeze) is refused.
func TestRootRotation(t *testing.T) {
	n := newTestNet(t)
	ctx := ctxFor(t, 3*time.Minute)
	r1, r2, r3 := testKey(t, 70), testKey(t, 71), testKey(t, 72)
	k1, k2, k3 := testKey(t, 73), testKey(t, 74), testKey(t, 75)
	pub := n.client(false)
	delegate(t, ctx, pub, r1, record.Delegation{Keys: delegates(k1)})
	publishAs(t, ctx, pub, r1.PublicKey(), k1, "1.0.0")
	user := n.client(false)
	out := t.TempDir()
	fetch := func() (*FetchResult, error) {
		return user.Fetch(ctx, FetchOptions{Key: r1.PublicKey(), Out: out})
	}
	if _, err := fetch(); err != nil {
		t.Fatal(err)
	}
	// r2 signs for itself first, then r1 names it; r2 names r3 the same way.
	delegate(t, ctx, pub, r2, record.Delegation{Keys: delegates(k2)})
	delegate(t, ctx, pub, r1, record.Delegation{Next: r2.PublicKey()})
	publishAs(t, ctx, pub, r1.PublicKey(), k2, "1.1.0")
	res, err := fetch()
	if err != nil || res.Release.Version.String() != "1.1.0" || res.Root.Key != r2.PublicKey() {
		t.Fatalf("after the first rotation: %+v, %v", res, err)
	}
	delegate(t, ctx, pub, r3, record.Delegation{Keys: delegates(k3), Revoked: []signer.PublicKey{k1.PublicKey()}})
	delegate(t, ctx, pub, r2, record.Delegation{Next: r3.PublicKey()})
	publishAs(t, ctx, pub, r1.PublicKey(), k3, "1.2.0")
	res, err = fetch()
	if err != nil || res.Release.Version.String() != "1.2.0" || res.Root.Key != r3.PublicKey() {
		t.Fatalf("after the second rotation: %+v, %v", res, err)
	}
	ch, _, err := user.states.loadChain(r1.PublicKey())
	if err != nil || ch.Root != r3.PublicKey() || !slices.Equal(ch.Roots, []signer.PublicKey{r1.PublicKey(), r2.PublicKey()}) {
		t.Fatalf("chain %+v, %v", ch, err)
	}
	// r1 (stolen, say) names another successor: this watcher is past r1.
	evil, evilKey := testKey(t, 76), testKey(t, 77)
	delegate(t, ctx, pub, evil, record.Delegation{Keys: delegates(evilKey)})
	delegate(t, ctx, pub, r1, record.Delegation{Next: evil.PublicKey()})
	publishAs(t, ctx, pub, r1.PublicKey(), evilKey, "6.6.6")
	if res, err := fetch(); err != nil || !res.UpToDate || res.Release.Version.String() != "1.2.0" {
		t.Fatalf("after r1 named another successor: %+v, %v", res, err)
	}
	// Freeze: r3's delegation expires and is not re-signed.
	frozen := record.Delegation{Keys: delegates(k3), Expires: time.Now().Add(2 * time.Second).Truncate(time.Second)}
	delegate(t, ctx, pub, r3, frozen)
	time.Sleep(time.Until(frozen.Expires))
	if _, err := fetch(); !errors.Is(err, record.ErrExpired) {
		t.Fatalf("expired delegation: %v", err)
	}
	if got := placedApp(t, out); got != "app 1.2.0 for this platform" {
		t.Fatalf("placed %q", got)
	}
}

// TestLegacyKeyUntouched: a key that signs its own releases writes no
// chain file, and its state is as before.
func TestLegacyKeyUntouched(t *testing.T) {
	n := newTestNet(t)
	ctx := ctxFor(t, 2*time.Minute)
	k := testKey(t, 80)
	pub := n.client(false)
	publishAs(t, ctx, pub, signer.PublicKey{}, k, "1.0.0")
	user := n.client(false)
	res, err := user.Fetch(ctx, FetchOptions{Key: k.PublicKey(), Out: t.TempDir()})
	if err != nil || res.Delegation != nil || len(res.Signers) != 0 {
		t.Fatalf("%+v, %v", res, err)
	}
	if _, ok, err := user.states.loadChain(k.PublicKey()); ok || err != nil {
		t.Fatalf("a chain file for a key that delegates nothing: %v", err)
	}
}
