package update_test

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/transfer"
	"github.com/relay-sh/relay/update"
)

// TestNotifyOnlyInstallable: a release that holds only a plan9 build is
// refused by Check with ErrNoExecutable (its manifest alone was fetched)
// and not announced by Run(NotifyOnly), which goes on checking; the next
// release, built for this platform, is announced with its notes and the
// size Apply would fetch.
func TestNotifyOnlyInstallable(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	key := newKey(t)
	pub := publisher(t)
	publish(t, pub, key, "2.0.0", writeFile(t, t.TempDir(), "app_plan9_386", "app 2.0.0 for plan9", 0o755))

	logs := &logLines{}
	u, err := update.New(update.Config{
		Key:        key.PublicKey(),
		Version:    record.MustParseVersion("1.0.0"),
		Executable: writeFile(t, t.TempDir(), "app", "app 1.0.0", 0o755),
		Bootstrap:  []string{bootstrap(t)},
		Listen:     "127.0.0.1:0",
		DataDir:    t.TempDir(),
		Interval:   200 * time.Millisecond,
		Logger:     slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	rel, err := u.Check(ctx)
	if !errors.Is(err, update.ErrNoExecutable) || rel == nil || rel.Version.String() != "2.0.0" || rel.Manifest == nil {
		t.Fatalf("check of a plan9 release: %+v, %v; want 2.0.0 refused with ErrNoExecutable", rel, err)
	}
	t.Logf("check: %v", err)

	type result struct {
		rel *update.Release
		err error
	}
	done := make(chan result, 1)
	go func() {
		rel, err := u.Run(ctx, update.NotifyOnly)
		done <- result{rel, err}
	}()
	logs.wait(t, ctx, "refused a release", "no file built for "+runtime.GOOS+"/"+runtime.GOARCH)
	select {
	case r := <-done:
		t.Fatalf("Run announced %+v (%v), which this platform cannot install", r.rel, r.err)
	default:
	}

	bin := writeFile(t, t.TempDir(), "app_"+runtime.GOOS+"_"+runtime.GOARCH, "app 3.0.0", 0o755)
	notes := writeFile(t, t.TempDir(), "NOTES.txt", "what changed", 0o644)
	if _, err := pub.Publish(ctx, relay.PublishOptions{Key: key, Version: record.MustParseVersion("3.0.0"), Notes: "fixes the frobnicator",
		Sources: []transfer.Source{{Path: bin}, {Path: notes}}}); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.rel == nil || r.rel.Version.String() != "3.0.0" || r.rel.Notes != "fixes the frobnicator" ||
		r.rel.File.Path != "app_"+runtime.GOOS+"_"+runtime.GOARCH || r.rel.Size != int64(len("app 3.0.0")+len("what changed")) {
		t.Fatalf("Run(NotifyOnly): %+v, %v", r.rel, r.err)
	}
}

// logLines collects log lines, for a test to wait for one.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, strings.Split(strings.TrimSpace(string(p)), "\n")...)
	return len(p), nil
}

// wait waits until a line holds all of parts, failing the test when ctx
// ends first.
func (l *logLines) wait(t *testing.T, ctx context.Context, parts ...string) {
	t.Helper()
	for {
		l.mu.Lock()
		for _, line := range l.lines {
			if containsAll(line, parts) {
				l.mu.Unlock()
				return
			}
		}
		l.mu.Unlock()
		select {
		case <-ctx.Done():
			t.Fatalf("no log line holds %q: %v", parts, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
