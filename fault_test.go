package relay

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/relay-sh/relay/dht"
	"github.com/relay-sh/relay/dht/localnet"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/transfer"
)

// A watcher whose network goes away reports errors with a growing wait,
// keeps going, and installs the release published once the network is
// back.
func TestWatchSurvivesNetworkLoss(t *testing.T) {
	ctx := ctxFor(t, 2*time.Minute)
	ln, err := localnet.Start(ctx, localnet.Config{Nodes: 8})
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, n := range ln.All() {
		addrs = append(addrs, n.Addr().String())
	}
	open := func(readOnly bool) *Client {
		c, err := Open(ctx, Config{DataDir: t.TempDir(), Bootstrap: addrs[:1], Listen: "127.0.0.1:0", ReadOnly: readOnly})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	key := testKey(t, 41)
	pub, user := open(false), open(true)
	publish := func(v string) {
		t.Helper()
		if _, err := pub.Publish(ctx, PublishOptions{Key: key, Version: record.MustParseVersion(v),
			Sources: []transfer.Source{{Path: releaseDir(t, v)}}}); err != nil {
			t.Fatal(err)
		}
	}
	publish("1.0.0")
	out := t.TempDir()
	// An interval above firstRetry, so that the backoff shows: errors are
	// retried after firstRetry, then twice that, capped at the interval.
	const interval = firstRetry * 8 / 5
	events := make(chan Event, 64)
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- user.Watch(wctx, WatchOptions{FetchOptions: FetchOptions{Key: key.PublicKey(), Out: out},
			Interval: interval, OnEvent: func(e Event) { events <- e }})
	}()
	next := func() Event {
		t.Helper()
		select {
		case e := <-events:
			t.Logf("event %s %s retry %s %v", e.Kind, e.Version, e.Retry, e.Err)
			return e
		case <-ctx.Done():
			t.Fatal("no event")
		}
		return Event{}
	}
	for e := next(); e.Kind != EventInstalled; e = next() {
	}

	// The network goes: every DHT node stops, the publisher's too.
	pub.Close()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	var retries []time.Duration
	for len(retries) < 2 {
		if e := next(); e.Kind == EventError {
			retries = append(retries, e.Retry)
		}
	}
	if retries[0] != firstRetry || retries[1] != interval {
		t.Errorf("retries %v: want %s then %s", retries, firstRetry, time.Duration(interval))
	}

	// It comes back: new nodes at the same addresses, and a new release
	// from a new build machine.
	var nodes []*dht.Node
	for i, a := range addrs {
		cfg := ln.Config(func(c *dht.Config) {
			c.Listen = a
			c.Bootstrap = addrs[:1]
			if i == 0 {
				c.Bootstrap, c.Bootstrapper = nil, true
			}
		})
		n, err := dht.New(ctx, cfg)
		if err != nil {
			t.Fatalf("node %d at %s: %v", i, a, err)
		}
		t.Cleanup(func() { n.Close() })
		nodes = append(nodes, n)
	}
	for _, n := range nodes[1:] {
		n.Refresh(ctx)
	}
	pub = open(false)
	publish("2.0.0")
	for e := next(); e.Kind != EventInstalled; e = next() {
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(out, "app_"+runtime.GOOS+"_"+runtime.GOARCH))
	if string(got) != "app 2.0.0 for this platform" {
		t.Fatalf("after the network came back: %q", got)
	}
}

// A seeder stopped and started again in its data folder serves its
// bundles at once, without downloading or hashing them again, and goes on
// storing the records it follows again.
func TestSeedRestartServesWithoutDownload(t *testing.T) {
	n := newTestNet(t)
	ctx := ctxFor(t, time.Minute)
	key := testKey(t, 42)
	pub := n.client(false)
	if _, err := pub.Publish(ctx, PublishOptions{Key: key, Version: record.MustParseVersion("1.0.0"),
		Sources: []transfer.Source{{Path: releaseDir(t, "1.0.0")}}}); err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	for run := range 2 {
		c, err := Open(ctx, Config{DataDir: dataDir, Bootstrap: []string{n.net.Bootstrap.Addr().String()}, Listen: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		sctx, stop := context.WithCancel(ctx)
		events := make(chan Event, 64)
		done := make(chan error, 1)
		go func() {
			done <- c.Seed(sctx, SeedOptions{Follow: []Follow{{Key: key.PublicKey(), Channel: "stable"}},
				Interval: 200 * time.Millisecond, Restore: 200 * time.Millisecond, OnEvent: func(e Event) { events <- e }})
		}()
		var seeding *transfer.Bundle
		restored := 0
		for seeding == nil || restored < 2 {
			select {
			case e := <-events:
				t.Logf("run %d: %s %s %v", run, e.Kind, e.Version, e.Err)
				switch e.Kind {
				case EventSeeding:
					seeding = e.Bundle
				case EventRestored:
					restored++
				case EventError, EventRefused:
					t.Fatalf("run %d: %v", run, e.Err)
				}
			case <-ctx.Done():
				t.Fatalf("run %d: seeding %v, %d restores", run, seeding != nil, restored)
			}
		}
		st, ok := c.BundleStats(seeding.Infohash)
		if !ok || st.Have != seeding.Size {
			t.Fatalf("run %d: serving %d of %d bytes", run, st.Have, seeding.Size)
		}
		if run == 1 && (st.Downloaded != 0 || st.Hashed != 0) {
			t.Fatalf("after the restart: downloaded %d bytes, hashed %d", st.Downloaded, st.Hashed)
		}
		stop()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
}

// mountSmall mounts a tmpfs of size bytes on a new folder and returns it;
// it skips the test where that is not possible (not root, not Linux).
func mountSmall(t *testing.T, size int) string {
	t.Helper()
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("a small file system needs root on Linux (mount -t tmpfs)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.Itoa(size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "--lazy", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// A disk that fills during a fetch: the fetch fails saying so, nothing
// is placed or accepted.
func TestFetchDiskFull(t *testing.T) {
	disk := mountSmall(t, 1<<20)
	n := newTestNet(t)
	ctx := ctxFor(t, time.Minute)
	key := testKey(t, 43)
	src := t.TempDir()
	big := make([]byte, 3<<20)
	for i := range big {
		big[i] = byte(i * 7 / 5)
	}
	if err := os.WriteFile(filepath.Join(src, "app_"+runtime.GOOS+"_"+runtime.GOARCH), big, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := n.client(false).Publish(ctx, PublishOptions{Key: key, Version: record.MustParseVersion("1.0.0"),
		Sources: []transfer.Source{{Path: src}}}); err != nil {
		t.Fatal(err)
	}
	user, err := Open(ctx, Config{DataDir: filepath.Join(disk, "data"), Bootstrap: []string{n.net.Bootstrap.Addr().String()}, Listen: "127.0.0.1:0", ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer user.Close()
	out := t.TempDir()
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err = user.Fetch(fctx, FetchOptions{Key: key.PublicKey(), Out: out})
	t.Logf("fetch: %v", err)
	if err == nil || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("fetch on a full disk: %v, want an error that says the disk is full", err)
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("placed %d files", len(entries))
	}
	if st, err := user.State(key.PublicKey(), "stable"); err != nil || st.Seq != 0 {
		t.Errorf("state after the failed fetch: %+v %v", st, err)
	}
}
