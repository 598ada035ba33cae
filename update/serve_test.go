package update_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/update"
)

// TestRunServes: a program that installed a release serves it while Run
// runs, so that a new user fetches it from that program once the
// publisher is gone.
func TestRunServes(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	key := newKey(t)
	pub := publisher(t)
	rel := t.TempDir()
	name := "app_" + runtime.GOOS + "_" + runtime.GOARCH
	publish(t, pub, key, "2.0.0", writeFile(t, rel, name, "app 2.0.0", 0o755))

	exe := writeFile(t, t.TempDir(), "app", "app 1.0.0", 0o755)
	dataDir := t.TempDir()
	got, err := newUpdaterIn(t, dataDir, key.PublicKey(), "1.0.0", exe, nil).Run(ctx, update.Install)
	if err != nil || got.Version.String() != "2.0.0" {
		t.Fatalf("run: %+v, %v", got, err)
	}
	pub.Close()

	// The program restarted as 2.0.0 and checks for updates.
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() {
		_, err := newUpdaterIn(t, dataDir, key.PublicKey(), "2.0.0", exe, nil).Run(runCtx, update.Install)
		done <- err
	}()

	user := publisher(t) // a client of its own on the local DHT, fresh
	out := t.TempDir()
	if _, err := user.Fetch(ctx, relay.FetchOptions{Key: key.PublicKey(), Out: out}); err != nil {
		t.Fatalf("fetch with only the updated program serving: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(out, name)); string(b) != "app 2.0.0" {
		t.Fatalf("fetched %q", b)
	}
	stop()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("run ended with %v", err)
	}
}
