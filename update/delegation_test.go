package update_test

import (
	"errors"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/transfer"
)

// TestApplyDelegated: a program following an offline root updates to what
// the root's release key publishes, as relay watch does; once the root
// revokes that key, the updater says the installed release was signed by a
// revoked key (relay.ErrRevokedInstall) until a release of the new key
// replaces it.
func TestApplyDelegated(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	root, stolen, fresh := newKey(t), newKey(t), newKey(t)
	pub := publisher(t)
	delegate := func(d record.Delegation) {
		t.Helper()
		d.Expires = time.Now().Add(time.Hour).Truncate(time.Second)
		packet, err := record.SetDelegation(root.PublicKey(), nil, d)
		if err != nil {
			t.Fatal(err)
		}
		p, err := record.Sign(root, record.NextSeq(time.Now(), 0), packet)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pub.Store(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	publishAs := func(key *signer.PrivateKey, v string) {
		t.Helper()
		rel := t.TempDir()
		f := writeFile(t, rel, "app_"+runtime.GOOS+"_"+runtime.GOARCH, "app "+v, 0o755)
		if _, err := pub.Publish(ctx, relay.PublishOptions{Key: key, Root: root.PublicKey(), Version: record.MustParseVersion(v),
			Sources: []transfer.Source{{Path: f}}}); err != nil {
			t.Fatal(err)
		}
	}
	delegate(record.Delegation{Keys: []record.Delegate{{Key: stolen.PublicKey()}}, Threshold: 1})
	publishAs(stolen, "2.0.0")

	exe := writeFile(t, t.TempDir(), "app", "app 1.0.0", 0o755)
	dataDir := t.TempDir()
	u := newUpdaterIn(t, dataDir, root.PublicKey(), "1.0.0", exe, nil)
	if got, err := u.Apply(ctx); err != nil || got == nil || got.Version.String() != "2.0.0" {
		t.Fatalf("apply: %+v, %v", got, err)
	}
	delegate(record.Delegation{Keys: []record.Delegate{{Key: fresh.PublicKey()}}, Threshold: 1, Revoked: []signer.PublicKey{stolen.PublicKey()}})
	u = newUpdaterIn(t, dataDir, root.PublicKey(), "2.0.0", exe, nil)
	if _, err := u.Check(ctx); !errors.Is(err, relay.ErrRevokedInstall) {
		t.Fatalf("check after the revocation: %v", err)
	}
	publishAs(fresh, "2.0.1")
	if got, err := u.Apply(ctx); err != nil || got == nil || got.Version.String() != "2.0.1" {
		t.Fatalf("apply after the revocation: %+v, %v", got, err)
	}
	if b, _ := os.ReadFile(exe); string(b) != "app 2.0.1" {
		t.Fatalf("executable holds %q", b)
	}
}
