package update_test

import (
	"crypto/rand"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/transfer"
	"github.com/relay-sh/relay/update"
)

// heldLog is a test log that also notes when the updater said a release
// is held back.
type heldLog struct {
	t    *testing.T
	once sync.Once
	held chan struct{}
}

func (w *heldLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	if strings.Contains(string(p), "not yet rolled out to this machine") {
		w.once.Do(func() { close(w.held) })
	}
	return len(p), nil
}

// rolloutUpdater is an updater of "app 1.0.0" following key, whose data
// folder holds a secret that places it at or above 50 in the rollouts of
// 2.0.0 and at or above 1 in that of 3.0.0. It logs what it does to the
// test log, and log.held is closed once it says a release is held back.
func rolloutUpdater(t *testing.T, key signer.PublicKey) (u *update.Updater, exe string, log *heldLog) {
	t.Helper()
	dataDir := t.TempDir()
	for {
		s := make([]byte, 32)
		rand.Read(s)
		place := func(v string) int { return record.RolloutPlace(s, key, "stable", record.MustParseVersion(v)) }
		if place("2.0.0") >= 50 && place("3.0.0") >= 1 {
			if err := os.WriteFile(filepath.Join(dataDir, relay.SecretFile), s, 0o600); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	exe = writeFile(t, t.TempDir(), "app", "app 1.0.0", 0o755)
	log = &heldLog{t: t, held: make(chan struct{})}
	u, err := update.New(update.Config{
		Key:        key,
		Version:    record.MustParseVersion("1.0.0"),
		Executable: exe,
		Bootstrap:  []string{bootstrap(t)},
		Listen:     "127.0.0.1:0",
		DataDir:    dataDir,
		Interval:   200 * time.Millisecond,
		NoServe:    true,
		Logger:     slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		t.Fatal(err)
	}
	return u, exe, log
}

// TestRollout: 2.0.0 rolled out to 50% of machines is held back from
// programs whose place is above it: Check and Apply return it with
// ErrHeldBack and the executable stays 1.0.0; Run(Install) and
// Run(NotifyOnly) take that as nothing to do yet and go on checking, and
// once the provider widens the rollout to every machine (SetRollout),
// Run(Install) installs 2.0.0 and Run(NotifyOnly) reports it. A critical
// 3.0.0 rolled out to 1% is installed by Apply on a machine outside the
// 1%.
func TestRollout(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	key := newKey(t)
	pub := publisher(t)
	rel := t.TempDir()
	name := "app_" + runtime.GOOS + "_" + runtime.GOARCH
	publishStaged := func(v string, rollout int, critical bool) {
		t.Helper()
		writeFile(t, rel, filepath.Join(v, name), "app "+v, 0o755)
		_, err := pub.Publish(ctx, relay.PublishOptions{Key: key, Version: record.MustParseVersion(v), Rollout: rollout, Critical: critical,
			Sources: []transfer.Source{{Path: filepath.Join(rel, v, name)}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	publishStaged("2.0.0", 50, false)

	installer, exe, installerLog := rolloutUpdater(t, key.PublicKey())
	notifier, _, notifierLog := rolloutUpdater(t, key.PublicKey())
	found, err := installer.Check(ctx)
	if !errors.Is(err, update.ErrHeldBack) || found == nil || found.Version.String() != "2.0.0" || found.Record.Rollout != 50 {
		t.Fatalf("check: %+v, %v", found, err)
	}
	t.Logf("check: %v", err)
	if got, err := installer.Apply(ctx); !errors.Is(err, update.ErrHeldBack) || got == nil || got.Version.String() != "2.0.0" {
		t.Fatalf("apply: %+v, %v", got, err)
	}
	if b, _ := os.ReadFile(exe); string(b) != "app 1.0.0" {
		t.Fatalf("the executable holds %q after a held-back apply", b)
	}

	type result struct {
		rel *update.Release
		err error
	}
	run := func(u *update.Updater, mode update.Mode) chan result {
		done := make(chan result, 1)
		go func() {
			r, err := u.Run(ctx, mode)
			done <- result{r, err}
		}()
		return done
	}
	installed, notified := run(installer, update.Install), run(notifier, update.NotifyOnly)
	for _, l := range []*heldLog{installerLog, notifierLog} {
		select {
		case <-l.held:
		case <-ctx.Done():
			t.Fatal("a Run did not say 2.0.0 is held back")
		}
	}
	if _, err := pub.SetRollout(ctx, relay.RolloutOptions{Key: key, Version: record.MustParseVersion("2.0.0"), Rollout: 100}); err != nil {
		t.Fatal(err)
	}
	if r := <-installed; r.err != nil || r.rel.Version.String() != "2.0.0" {
		t.Fatalf("Run(Install): %+v, %v", r.rel, r.err)
	}
	if b, _ := os.ReadFile(exe); string(b) != "app 2.0.0" {
		t.Fatalf("the executable holds %q after Run(Install)", b)
	}
	if r := <-notified; r.err != nil || r.rel.Version.String() != "2.0.0" {
		t.Fatalf("Run(NotifyOnly): %+v, %v", r.rel, r.err)
	}

	publishStaged("3.0.0", 1, true)
	got, err := installer.Apply(ctx)
	if err != nil || got == nil || got.Version.String() != "3.0.0" || !got.Record.Critical {
		t.Fatalf("critical release: %+v, %v", got, err)
	}
	if b, _ := os.ReadFile(exe); string(b) != "app 3.0.0" {
		t.Fatalf("the executable holds %q after the critical release", b)
	}
}
