package update_test

import (
	"errors"
	"os"
	"runtime"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/transfer"
	"github.com/relay-sh/relay/update"
)

// TestApplyEncrypted: an updater given an identity installs an encrypted
// release, decrypted; one without refuses it with relay.ErrNoIdentity
// and leaves the executable as it was.
func TestApplyEncrypted(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, time.Minute)
	key := newKey(t)
	pub := publisher(t)
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	app := writeFile(t, t.TempDir(), "app_"+runtime.GOOS+"_"+runtime.GOARCH, "app 2.0.0", 0o755)
	if _, err := pub.Publish(ctx, relay.PublishOptions{Key: key, Version: record.MustParseVersion("2.0.0"),
		Sources: []transfer.Source{{Path: app}}, Recipients: []relay.Recipient{id.Recipient()}}); err != nil {
		t.Fatal(err)
	}
	exe := writeFile(t, t.TempDir(), "app", "app 1.0.0", 0o755)
	config := func(ids []relay.Identity) update.Config {
		return update.Config{Key: key.PublicKey(), Version: record.MustParseVersion("1.0.0"), Executable: exe,
			Bootstrap: []string{bootstrap(t)}, Listen: "127.0.0.1:0", DataDir: t.TempDir(), Logger: testLogger(t), Identities: ids}
	}
	u, err := update.New(config(nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.Apply(ctx); !errors.Is(err, relay.ErrNoIdentity) {
		t.Fatalf("apply without identity: %v, want ErrNoIdentity", err)
	}
	if b, _ := os.ReadFile(exe); string(b) != "app 1.0.0" {
		t.Fatalf("executable holds %q", b)
	}
	if u, err = update.New(config([]relay.Identity{id})); err != nil {
		t.Fatal(err)
	}
	r, err := u.Apply(ctx)
	if err != nil || r == nil || r.Manifest.Encrypted != nil || r.File.Path != "app_"+runtime.GOOS+"_"+runtime.GOARCH {
		t.Fatalf("apply: %+v, %v", r, err)
	}
	if b, _ := os.ReadFile(exe); string(b) != "app 2.0.0" {
		t.Fatalf("executable holds %q", b)
	}
}
