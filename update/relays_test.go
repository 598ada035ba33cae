package update_test

import (
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/internal/relaytest"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/transfer"
	"github.com/relay-sh/relay/update"
)

// TestUpdateThroughRelay: a program whose network reaches no DHT node
// (UDP blocked) finds and installs its update through an HTTP relay
// (Config.Relays) and the release's web seed; a relay URL that is not
// http(s) is refused by New.
func TestUpdateThroughRelay(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	key := newKey(t)
	pubDir := t.TempDir()
	pub, err := relay.Open(ctx, relay.Config{DataDir: pubDir, Bootstrap: []string{bootstrap(t)}, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	rel := t.TempDir()
	if _, err := pub.Publish(ctx, relay.PublishOptions{
		Key: key, Version: record.MustParseVersion("2.0.0"), WebSeeds: []string{relaytest.WebSeed(t, pubDir)},
		Sources: []transfer.Source{{Path: writeFile(t, rel, "app_"+runtime.GOOS+"_"+runtime.GOARCH, "app 2.0.0", 0o755)}},
	}); err != nil {
		t.Fatal(err)
	}

	exe := writeFile(t, t.TempDir(), "app", "app 1.0.0", 0o755)
	cfg := update.Config{
		Key:        key.PublicKey(),
		Version:    record.MustParseVersion("1.0.0"),
		Executable: exe,
		Bootstrap:  []string{relaytest.SilentNode(t)},
		Listen:     "127.0.0.1:0",
		DataDir:    t.TempDir(),
		Relays:     []string{relaytest.Relay(t, network(t).Nodes[0])},
		Logger:     testLogger(t),
	}
	u, err := update.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := u.Apply(ctx)
	if err != nil || got == nil || got.Version.String() != "2.0.0" {
		t.Fatalf("apply through the relay: %+v, %v", got, err)
	}
	if b, _ := os.ReadFile(exe); string(b) != "app 2.0.0" {
		t.Fatalf("executable holds %q", b)
	}

	cfg.Relays = []string{"ftp://relay.example.org"}
	if _, err := update.New(cfg); err == nil {
		t.Error("New took an ftp relay URL")
	}
}
