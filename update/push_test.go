package update_test

import (
	"context"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/update"
)

// TestRunWokenByPush: a program whose Run checks the DHT once an hour
// installs a new release as soon as a seeder connected to it in its
// release's swarm finds it (relay_record), without waiting for its
// interval.
func TestRunWokenByPush(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 3*time.Minute)
	key := newKey(t)
	name := "app_" + runtime.GOOS + "_" + runtime.GOARCH
	pub := publisher(t)
	publish(t, pub, key, "1.0.0", writeFile(t, t.TempDir(), name, "app 1.0.0", 0o755))

	// The program, 0.9.0, installs 1.0.0 and runs it, checking hourly.
	exe := writeFile(t, t.TempDir(), "app", "app 0.9.0", 0o755)
	dataDir := t.TempDir()
	updater := func(v string) *update.Updater {
		u, err := update.New(update.Config{Key: key.PublicKey(), Version: record.MustParseVersion(v), Executable: exe,
			Bootstrap: []string{bootstrap(t)}, Listen: "127.0.0.1:0", DataDir: dataDir, Interval: time.Hour, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	if got, err := updater("0.9.0").Run(ctx, update.Install); err != nil || got.Version.String() != "1.0.0" {
		t.Fatalf("run: %+v, %v", got, err)
	}
	pub.Close()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	type result struct {
		rel *update.Release
		err error
	}
	done := make(chan result, 1)
	go func() {
		rel, err := updater("1.0.0").Run(runCtx, update.Install)
		done <- result{rel, err}
	}()

	// A seeder that checks often gets 1.0.0 from the program, the one
	// peer left: the two are connected in 1.0.0's swarm.
	seeder := publisher(t)
	seeding := make(chan struct{})
	seedDone := make(chan error, 1)
	go func() {
		seedDone <- seeder.Seed(runCtx, relay.SeedOptions{Follow: []relay.Follow{{Key: key.PublicKey(), Channel: "stable"}},
			Interval: 300 * time.Millisecond, OnEvent: func(e relay.Event) {
				if e.Kind == relay.EventSeeding && e.Version.String() == "1.0.0" {
					close(seeding)
				}
			}})
	}()
	select {
	case <-seeding:
	case <-ctx.Done():
		t.Fatal("the seeder never served 1.0.0")
	}

	// 2.0.0: the seeder finds it in the DHT and tells the program.
	pub2 := publisher(t)
	publish(t, pub2, key, "2.0.0", writeFile(t, t.TempDir(), name, "app 2.0.0", 0o755))
	start := time.Now()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		t.Fatal("the program did not install 2.0.0 a peer told it of")
	}
	if r.err != nil || r.rel.Version.String() != "2.0.0" {
		t.Fatalf("run: %+v, %v", r.rel, r.err)
	}
	t.Logf("the program (checking the DHT hourly) installed 2.0.0 %s after it was published", time.Since(start).Round(time.Millisecond))
	if b, _ := os.ReadFile(exe); string(b) != "app 2.0.0" {
		t.Fatalf("the executable holds %q", b)
	}
	stop()
	if err := <-seedDone; err != nil {
		t.Fatal(err)
	}
}
