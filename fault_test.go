package relay

import (
	"bytes"
	"context"
	"errors"
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
	"github.com/relay-sh/relay/internal/backoff"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
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
	// An interval above backoff.First, so that the backoff shows: errors are
	// retried after backoff.First, then twice that, capped at the interval.
	const interval = backoff.First * 8 / 5
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
	if retries[0] < backoff.First/2 || retries[0] >= backoff.First*3/2 || retries[1] < interval/2 || retries[1] >= interval*3/2 {
		t.Errorf("retries %v: want %s then %s, each ±50%%", retries, backoff.First, time.Duration(interval))
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
// is placed or accepted; once there is room, the next fetch resumes from
// what the failed one wrote.
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

	// Room again: the next fetch completes, taking up what the failed one
	// wrote instead of starting over, and places the whole file.
	if out, err := exec.Command("mount", "-o", "remount,size=16m", disk).CombinedOutput(); err != nil {
		t.Fatalf("remount %s larger: %v: %s", disk, err, out)
	}
	res, err := user.Fetch(ctx, FetchOptions{Key: key.PublicKey(), Out: out})
	if err != nil {
		t.Fatalf("fetch once there is room: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(out, "app_"+runtime.GOOS+"_"+runtime.GOARCH))
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("placed %d bytes (%v), want the %d published", len(got), err, len(big))
	}
	st, _ := user.BundleStats(res.Release.Infohash)
	t.Logf("second fetch: downloaded %d of %d bytes, hashed %d", st.Downloaded, st.Size, st.Hashed)
	if st.Downloaded >= int64(len(big)) {
		t.Errorf("the second fetch downloaded %d bytes, the whole file again: what the first one wrote was not used", st.Downloaded)
	}
}

// The publisher is gone for longer than DHT nodes keep items (a lifetime
// of two seconds here, two hours in the Mainline DHT): a seeder that
// follows the key stores its record again and keeps it resolvable, and a
// new user fetches the release. Another key published at the same time
// and followed by nobody is gone by then: without the seeder, the wait
// loses the record.
func TestSeederKeepsRecordAfterPublisherGone(t *testing.T) {
	const lifetime, restore = 2 * time.Second, time.Second
	ln := localnet.ForTest(t, localnet.Config{Nodes: 12, ItemLifetime: lifetime})
	ctx := ctxFor(t, time.Minute)
	bootstrap := []string{ln.Bootstrap.Addr().String()}
	open := func() *Client {
		t.Helper()
		// A read-only node, as `relay publish` and `relay fetch` run: it
		// holds no item of anyone's.
		c, err := Open(ctx, Config{DataDir: t.TempDir(), Bootstrap: bootstrap, Listen: "127.0.0.1:0", ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	pub := open()
	kept, lost := testKey(t, 44), testKey(t, 45)
	publish := func(key *signer.PrivateKey) {
		t.Helper()
		p, err := pub.Publish(ctx, PublishOptions{Key: key, Version: record.MustParseVersion("1.0.0"),
			Sources: []transfer.Source{{Path: releaseDir(t, "1.0.0")}}})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s published on %d nodes", key.PublicKey(), p.Stats.Acked)
	}
	publish(kept)

	// The seeder's DHT node is one of the network's, whose items expire
	// like the others': what it holds of the publisher's store is gone
	// too, and only its own stores keep the record.
	node, err := ln.Add(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	seeder, err := Open(ctx, Config{DataDir: t.TempDir(), Network: node, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer seeder.Close()
	// An hour between checks: only the restores wake the seeder.
	events, stop := startSeed(t, ctx, seeder, SeedOptions{Follow: []Follow{{Key: kept.PublicKey(), Channel: "stable"}},
		Interval: time.Hour, Restore: restore})
	defer stop()
	// next returns the seeder's next event, or nil once until is closed.
	next := func(until <-chan time.Time) *Event {
		t.Helper()
		select {
		case e := <-events:
			if e.Kind == EventError || e.Kind == EventRefused {
				t.Fatalf("seeder: %s: %v", e.Kind, e.Err)
			}
			return &e
		case <-until:
			return nil
		case <-ctx.Done():
			t.Fatal("no event from the seeder")
		}
		return nil
	}
	for e := next(nil); e.Kind != EventSeeding; e = next(nil) {
	}

	publish(lost)
	if _, err := pub.Resolve(ctx, lost.PublicKey(), "stable"); err != nil {
		t.Fatalf("the unfollowed record before the publisher leaves: %v", err)
	}
	pub.Close()
	gone := time.Now()
	// Each restore comes a Restore after the one before, not put off to
	// a later round (a Restore's wait cut short by its jitter once was).
	var restores []time.Time
	for wait := time.After(3 * lifetime); ; {
		if e := next(wait); e == nil {
			break
		} else if e.Kind == EventRestored {
			restores = append(restores, e.Time)
		}
	}
	if len(restores) < 4 {
		t.Fatalf("%d restores in three lifetimes, one every %v wanted", len(restores), restore)
	}
	var gaps []time.Duration
	for i := 1; i < len(restores); i++ {
		gaps = append(gaps, restores[i].Sub(restores[i-1]).Round(time.Millisecond))
	}
	// A restore's event comes after its lookup and store, whose time
	// varies on a loaded machine (one gap of 1.64 s, the next of 0.5 s,
	// under -race): the mean gap is the schedule's. One put off to a
	// later round (an Interval, an hour here) would leave too few.
	mean := restores[len(restores)-1].Sub(restores[0]) / time.Duration(len(restores)-1)
	t.Logf("%d restores since the publisher left, %v apart, %v on average", len(restores), gaps, mean.Round(time.Millisecond))
	if mean > restore*3/2 || mean < restore/2 {
		t.Errorf("restores %v apart on average (%v), want about %v", mean.Round(time.Millisecond), gaps, restore)
	}

	user := open()
	out := t.TempDir()
	res, err := user.Fetch(ctx, FetchOptions{Key: kept.PublicKey(), Out: out})
	if err != nil {
		t.Fatalf("fetch %v after the publisher left: %v", time.Since(gone).Round(time.Millisecond), err)
	}
	got, err := os.ReadFile(filepath.Join(out, "app_"+runtime.GOOS+"_"+runtime.GOARCH))
	if err != nil || string(got) != "app 1.0.0 for this platform" {
		t.Fatalf("fetched %q, %v", got, err)
	}
	// A resolve ends once half of the closest agree (dht.Node.Resolve):
	// who holds the record is asked of each node.
	held := 0
	for _, n := range ln.All() {
		if n.Held(kept.PublicKey()) != nil {
			held++
		}
	}
	t.Logf("resolved from %d nodes; %d of %d hold the record", res.Resolve.Held, held, len(ln.All()))
	if held < dht.K-1 {
		t.Errorf("the record is held by %d nodes, want the %d closest to the key or all but the seeder", held, dht.K)
	}
	if _, err := user.Resolve(ctx, lost.PublicKey(), "stable"); !errors.Is(err, dht.ErrNotFound) {
		t.Fatalf("the record nobody follows, %v after the publisher left: %v, want not found", time.Since(gone).Round(time.Millisecond), err)
	}
}
