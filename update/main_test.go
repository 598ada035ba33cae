package update_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/dht/localnet"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/transfer"
)

// The tests share one local DHT and one build of the example program per
// version, made on first use and removed when the tests end.
var (
	netOnce sync.Once
	testNet *localnet.Net
	netErr  error

	buildOnce sync.Once
	buildDir  string
	builds    map[string]string // version → binary
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if testNet != nil {
		testNet.Close()
	}
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// network returns the shared local DHT: 12 nodes on 127.0.0.1.
func network(t *testing.T) *localnet.Net {
	t.Helper()
	netOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		testNet, netErr = localnet.Start(ctx, localnet.Config{Nodes: 12})
	})
	if netErr != nil {
		t.Fatalf("local DHT: %v", netErr)
	}
	return testNet
}

func bootstrap(t *testing.T) string { return network(t).Bootstrap.Addr().String() }

// platformName is the name of the example's binary in a release: the
// platform suffix tells relay which os and arch it is for.
var platformName = "selfupdate_" + runtime.GOOS + "_" + runtime.GOARCH

// example returns the example program built at version v (1.0.0, 2.0.0
// or 2.0.1), named platformName, with its version set by -ldflags -X as a
// program's release build would be. It skips the test when there is no go
// command.
func example(t *testing.T, v string) string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command to build the example program with")
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "relay-update-test-")
		if buildErr != nil {
			return
		}
		builds = map[string]string{}
		for _, v := range []string{"1.0.0", "2.0.0", "2.0.1"} {
			out := filepath.Join(buildDir, v, platformName)
			cmd := exec.Command("go", "build", "-o", out, "-ldflags", "-s -w -X main.version="+v, "github.com/relay-sh/relay/examples/selfupdate")
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if msg, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", v, err, msg)
				return
			}
			builds[v] = out
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builds[v]
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func newKey(t *testing.T) *signer.PrivateKey {
	t.Helper()
	k, err := signer.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// publisher opens a relay client on the local DHT that publishes and
// seeds, closed when the test ends. Its DHT node is read-only, so that
// once it is closed nobody waits on it.
func publisher(t *testing.T) *relay.Client {
	t.Helper()
	c, err := relay.Open(ctxFor(t, 30*time.Second), relay.Config{
		DataDir:   t.TempDir(),
		Bootstrap: []string{bootstrap(t)},
		Listen:    "127.0.0.1:0",
		ReadOnly:  true,
		Logger:    testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// publish publishes files (paths) as version v of key's stable channel.
func publish(t *testing.T, pub *relay.Client, key *signer.PrivateKey, v string, files ...string) *relay.Published {
	t.Helper()
	var src []transfer.Source
	for _, f := range files {
		src = append(src, transfer.Source{Path: f})
	}
	p, err := pub.Publish(ctxFor(t, 30*time.Second), relay.PublishOptions{Key: key, Version: record.MustParseVersion(v), Sources: src})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// writeFile writes content to dir/name with mode and returns its path.
func writeFile(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// sameFile fails the test unless the file at p holds what the file at
// want holds.
func sameFile(t *testing.T, p, want string) {
	t.Helper()
	a, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatalf("%s (%d bytes) does not hold the content of %s (%d bytes)", p, len(a), want, len(b))
	}
}

// onlyFile fails the test unless dir holds only name: no temporary file,
// backup or moved-aside executable is left.
func onlyFile(t *testing.T, dir, name string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 1 || names[0] != name {
		t.Fatalf("%s holds %q, want only %s", dir, names, name)
	}
}

// testLogger logs to the test log: warnings and errors, or everything
// with RELAY_TEST_DEBUG set.
func testLogger(t *testing.T) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("RELAY_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
