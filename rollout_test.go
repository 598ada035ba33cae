package relay

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/transfer"
)

// TestRolloutSecret: a data folder's secret is made on first use (32
// bytes, private to its owner), is the same when read again, also by
// processes racing to make it, differs between data folders, and a
// secret too short to be one is refused, not replaced.
func TestRolloutSecret(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	got := make([][]byte, 8)
	errs := make([]error, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = rolloutSecret(dir)
		}()
	}
	wg.Wait()
	for i := range got {
		if errs[i] != nil || len(got[i]) != 32 || !bytes.Equal(got[i], got[0]) {
			t.Fatalf("maker %d: %x, %v; maker 0: %x", i, got[i], errs[i], got[0])
		}
	}
	fi, err := os.Stat(filepath.Join(dir, SecretFile))
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Errorf("secret file mode %04o, want 0600", fi.Mode().Perm())
	}
	if again, err := rolloutSecret(dir); err != nil || !bytes.Equal(again, got[0]) {
		t.Fatalf("read again: %x, %v", again, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the data folder holds %d files, want the secret alone", len(entries))
	}
	other, err := rolloutSecret(t.TempDir())
	if err != nil || bytes.Equal(other, got[0]) {
		t.Fatalf("another data folder: %x, %v", other, err)
	}
	short := t.TempDir()
	if err := os.WriteFile(filepath.Join(short, SecretFile), []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := rolloutSecret(short); err == nil {
		t.Fatal("a 5-byte secret was taken")
	}
	if b, _ := os.ReadFile(filepath.Join(short, SecretFile)); string(b) != "short" {
		t.Fatalf("the short secret was replaced by %x", b)
	}
}

// secretWhere writes into c's data folder a random secret that meets ok,
// and returns it.
func secretWhere(t *testing.T, c *Client, ok func(secret []byte) bool) []byte {
	t.Helper()
	for range 100000 {
		s := make([]byte, 32)
		rand.Read(s)
		if ok(s) {
			if err := os.WriteFile(filepath.Join(c.cfg.DataDir, SecretFile), s, 0o600); err != nil {
				t.Fatal(err)
			}
			return s
		}
	}
	t.Fatal("no secret meets the test's conditions")
	return nil
}

// TestFetchStaged: with the 1.0.0 release accepted, a staged fetch of
// 2.0.0 rolled out to 50% installs it on a machine whose place is below
// 50 and holds it back (ErrHeldBack, its place said, nothing placed or
// saved) on one above, whose unstaged fetch and whose fresh data folder
// would take it; SetRollout widens it to every machine under a higher
// seq, and the held machine takes it; a rollout change for another
// version is refused. A critical 3.0.0 rolled out to 1% is taken by a
// machine outside the 1%; a held 4.0.0 does not stop 5.0.0, published
// for every machine.
func TestFetchStaged(t *testing.T) {
	n := newTestNet(t)
	ctx := ctxFor(t, 3*time.Minute)
	key := testKey(t, 24)
	pk := key.PublicKey()
	pub := n.client(false)
	publish := func(v string, rollout int, critical bool) {
		t.Helper()
		if _, err := pub.Publish(ctx, PublishOptions{Key: key, Version: record.MustParseVersion(v), Rollout: rollout, Critical: critical,
			Sources: []transfer.Source{{Path: releaseDir(t, v)}}}); err != nil {
			t.Fatal(err)
		}
	}
	place := func(secret []byte, v string) int {
		return record.RolloutPlace(secret, pk, "stable", record.MustParseVersion(v))
	}
	early, late := n.client(true), n.client(true)
	secretWhere(t, early, func(s []byte) bool { return place(s, "2.0.0") < 50 })
	lateSecret := secretWhere(t, late, func(s []byte) bool {
		return place(s, "2.0.0") >= 50 && place(s, "3.0.0") >= 1 && place(s, "4.0.0") >= 1
	})
	earlyOut, lateOut := t.TempDir(), t.TempDir()
	exe := "app_" + runtime.GOOS + "_" + runtime.GOARCH
	holds := func(out, v string) {
		t.Helper()
		if b, _ := os.ReadFile(filepath.Join(out, exe)); string(b) != "app "+v+" for this platform" {
			t.Fatalf("%s holds %q, want %s", out, b, v)
		}
	}
	fetch := func(c *Client, out string) (*FetchResult, error) {
		return c.Fetch(ctx, FetchOptions{Key: pk, Out: out, Staged: true})
	}
	publish("1.0.0", 0, false)
	for _, c := range []struct {
		c   *Client
		out string
	}{{early, earlyOut}, {late, lateOut}} {
		if _, err := fetch(c.c, c.out); err != nil {
			t.Fatal(err)
		}
	}

	publish("2.0.0", 50, false)
	if res, err := fetch(early, earlyOut); err != nil || res.Release.Version.String() != "2.0.0" {
		t.Fatalf("early machine: %v", err)
	}
	holds(earlyOut, "2.0.0")
	res, err := fetch(late, lateOut)
	if !errors.Is(err, ErrHeldBack) || res == nil || res.Release.Version.String() != "2.0.0" || res.Place != place(lateSecret, "2.0.0") {
		t.Fatalf("late machine: %+v, %v", res, err)
	}
	t.Logf("held back: %v", err)
	holds(lateOut, "1.0.0")
	if st, err := late.State(pk, "stable"); err != nil || st.Version.String() != "1.0.0" {
		t.Fatalf("late machine's state: %s, %v", st.Version, err)
	}
	// A fresh data folder holds nothing to keep; a person's fetch takes
	// the release at once. Neither is the late machine.
	fresh := n.client(true)
	secretWhere(t, fresh, func(s []byte) bool { return place(s, "2.0.0") >= 50 })
	if _, err := fetch(fresh, t.TempDir()); err != nil {
		t.Fatalf("fresh data folder: %v", err)
	}
	if res, err := late.Fetch(ctx, FetchOptions{Key: pk, Out: t.TempDir(), CheckOnly: true}); err != nil || res.UpToDate {
		t.Fatalf("unstaged check: %+v, %v", res, err)
	}

	if _, err := pub.SetRollout(ctx, RolloutOptions{Key: key, Version: record.MustParseVersion("1.0.0")}); !errors.Is(err, ErrNotCurrent) {
		t.Fatalf("rollout change of 1.0.0: %v", err)
	}
	before := res.Packet.Seq
	ch, err := pub.SetRollout(ctx, RolloutOptions{Key: key, Version: record.MustParseVersion("2.0.0")})
	if err != nil {
		t.Fatal(err)
	}
	if ch.Previous.Rollout != 50 || ch.Release.Rollout != 0 || ch.Packet.Seq <= before ||
		ch.Release.Infohash != ch.Previous.Infohash || ch.Release.Manifest != ch.Previous.Manifest {
		t.Fatalf("widened: %+v", ch)
	}
	if res, err := fetch(late, lateOut); err != nil || res.Release.Version.String() != "2.0.0" || res.UpToDate {
		t.Fatalf("late machine after the widening: %+v, %v", res, err)
	}
	holds(lateOut, "2.0.0")
	if res, err := fetch(early, earlyOut); err != nil || !res.UpToDate {
		t.Fatalf("early machine after the widening: %+v, %v", res, err)
	}

	publish("3.0.0", 1, true)
	if _, err := fetch(late, lateOut); err != nil {
		t.Fatalf("critical release: %v", err)
	}
	holds(lateOut, "3.0.0")

	publish("4.0.0", 1, false)
	if _, err := fetch(late, lateOut); !errors.Is(err, ErrHeldBack) {
		t.Fatalf("4.0.0 to 1%%: %v", err)
	}
	publish("5.0.0", 0, false)
	if _, err := fetch(late, lateOut); err != nil {
		t.Fatalf("5.0.0 after a held 4.0.0: %v", err)
	}
	holds(lateOut, "5.0.0")
}
