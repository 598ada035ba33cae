package relay

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/relay-sh/relay/dht/localnet"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/transfer"
)

// testNet is a local DHT with helpers to open clients on it.
type testNet struct {
	t   *testing.T
	net *localnet.Net
}

func newTestNet(t *testing.T) *testNet {
	return &testNet{t: t, net: localnet.ForTest(t, localnet.Config{Nodes: 12})}
}

// testEngine is the BitTorrent engine of the clients clientIn opens:
// RELAY_ENGINE=wire runs the tests that open theirs so on relay's own
// (transfer.EngineWire).
var testEngine = func() transfer.Engine {
	e, err := transfer.ParseEngine(os.Getenv("RELAY_ENGINE"))
	if err != nil {
		panic(fmt.Sprintf("RELAY_ENGINE: %v", err))
	}
	return e
}()

// client opens a client with its own data folder on the network.
func (n *testNet) client(readOnly bool) *Client {
	n.t.Helper()
	return n.clientIn(n.t.TempDir(), readOnly)
}

// clientIn opens a client with data folder dir on the network.
func (n *testNet) clientIn(dir string, readOnly bool) *Client {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Open(ctx, Config{
		DataDir:   dir,
		Bootstrap: []string{n.net.Bootstrap.Addr().String()},
		Listen:    "127.0.0.1:0",
		ReadOnly:  readOnly,
		Engine:    testEngine,
	})
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { c.Close() })
	return c
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// release writes a release folder: a binary for this platform, one for
// another, and a README.
func releaseDir(t *testing.T, version string) string {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("app_"+runtime.GOOS+"_"+runtime.GOARCH, "app "+version+" for this platform", 0o755)
	write("app_plan9_mips", "app "+version+" for plan9", 0o755)
	write("README", "release notes of "+version, 0o644)
	return dir
}

func TestPublishFetchWatch(t *testing.T) {
	n := newTestNet(t)
	ctx := ctxFor(t, 2*time.Minute)
	key := testKey(t, 7)
	pub := n.client(false)

	p1, err := pub.Publish(ctx, PublishOptions{Key: key, Version: record.MustParseVersion("1.0.0"),
		Sources: []transfer.Source{{Path: releaseDir(t, "1.0.0")}}})
	if err != nil {
		t.Fatal(err)
	}
	if p1.Stats.Acked == 0 {
		t.Fatal("no node stored the record")
	}

	// A user fetches it: only this platform's files and the README.
	user := n.client(true)
	out := t.TempDir()
	res, err := user.Fetch(ctx, FetchOptions{Key: key.PublicKey(), Out: out})
	if err != nil {
		t.Fatal(err)
	}
	if res.Release.Version.String() != "1.0.0" || len(res.Placed) != 2 {
		t.Fatalf("fetch: %s, placed %v", res.Release.Version, res.Placed)
	}
	got, _ := os.ReadFile(filepath.Join(out, "app_"+runtime.GOOS+"_"+runtime.GOARCH))
	if string(got) != "app 1.0.0 for this platform" {
		t.Fatalf("placed %q", got)
	}
	if _, err := os.Stat(filepath.Join(out, "app_plan9_mips")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("another platform's file was placed")
	}
	// Fetched again: up to date, nothing new.
	again, err := user.Fetch(ctx, FetchOptions{Key: key.PublicKey(), Out: out})
	if err != nil || !again.UpToDate {
		t.Fatalf("second fetch: %+v %v", again, err)
	}

	// Publishing the same version again is refused.
	if _, err := pub.Publish(ctx, PublishOptions{Key: key, Version: record.MustParseVersion("1.0.0"),
		Sources: []transfer.Source{{Path: releaseDir(t, "1.0.0")}}}); !errors.Is(err, ErrNotNewer) {
		t.Fatalf("republish 1.0.0: %v", err)
	}

	// A watcher sees 2.0.0 when it is published.
	wctx, stop := context.WithCancel(ctx)
	events := make(chan Event, 16)
	done := make(chan error, 1)
	go func() {
		done <- user.Watch(wctx, WatchOptions{FetchOptions: FetchOptions{Key: key.PublicKey(), Out: out}, Interval: 300 * time.Millisecond,
			OnEvent: func(e Event) { events <- e }})
	}()
	if _, err := pub.Publish(ctx, PublishOptions{Key: key, Version: record.MustParseVersion("2.0.0"),
		Sources: []transfer.Source{{Path: releaseDir(t, "2.0.0")}}}); err != nil {
		t.Fatal(err)
	}
	for e := range events {
		t.Logf("event %s %s %v", e.Kind, e.Version, e.Err)
		if e.Kind == EventInstalled {
			if e.Version.String() != "2.0.0" {
				t.Fatalf("installed %s", e.Version)
			}
			break
		}
		if e.Kind != EventChecked && e.Kind != EventSeeding {
			t.Fatalf("unexpected event %s: %v", e.Kind, e.Err)
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got, _ = os.ReadFile(filepath.Join(out, "app_"+runtime.GOOS+"_"+runtime.GOARCH))
	if string(got) != "app 2.0.0 for this platform" {
		t.Fatalf("after watch: %q", got)
	}
	st, err := user.State(key.PublicKey(), "stable")
	if err != nil || st.Version.String() != "2.0.0" || st.Packet == nil {
		t.Fatalf("state: %+v %v", st, err)
	}
}
