package relay

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/transfer"
)

// TestFetchMoveHandsOverWithoutACopy: relay fetch --out (FetchOptions.Move)
// hands the files it downloaded over to --out by moving them out of the
// bundle: the data folder keeps no second copy, and nothing is lost on the
// way (the files are whole and verified where they land, with their
// manifest's mode). A fetch of the same release again downloads them
// again. The publisher's own bundle, which its client seeds, is never
// taken from: a Move fetch in its data folder copies.
func TestFetchMoveHandsOverWithoutACopy(t *testing.T) {
	n, ctx, key, pub := publishedOne(t, 11)
	app := "app_" + runtime.GOOS + "_" + runtime.GOARCH
	user := n.client(true)
	for i := range 2 {
		out := t.TempDir()
		res, err := user.Fetch(ctx, FetchOptions{Key: key.PublicKey(), Out: out, Move: true, Again: true})
		if err != nil {
			t.Fatalf("fetch %d: %v", i, err)
		}
		checkPlaced(t, out, app, "app 1.0.0 for this platform", 0o755)
		checkPlaced(t, out, "README", "release notes of 1.0.0", 0o644)
		for _, name := range []string{app, "README"} {
			if _, err := os.Stat(filepath.Join(res.Bundle.Dir, name)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("fetch %d: the data folder still holds %s after it was moved to --out (%v)", i, name, err)
			}
		}
		assertNoTemp(t, out)
	}

	out := t.TempDir()
	res, err := pub.Fetch(ctx, FetchOptions{Key: key.PublicKey(), Out: out, Move: true, Again: true})
	if err != nil {
		t.Fatal(err)
	}
	checkPlaced(t, out, app, "app 1.0.0 for this platform", 0o755)
	if got, err := os.ReadFile(filepath.Join(res.Bundle.Dir, app)); err != nil || string(got) != "app 1.0.0 for this platform" {
		t.Errorf("the publisher's bundle lost %s to a fetch with Move: %q %v", app, got, err)
	}
}

// TestPlacedCopyIsItsOwn: a watcher (no Move) goes on serving the bundle
// it fetched; the file it places is a copy of its own (a copy in the
// kernel or a reflink, never a second name of the bundle's file), so a
// user who edits the placed file cannot change what the watcher serves.
func TestPlacedCopyIsItsOwn(t *testing.T) {
	n, ctx, key, _ := publishedOne(t, 12)
	out := t.TempDir()
	res, err := n.client(false).Fetch(ctx, FetchOptions{Key: key.PublicKey(), Out: out})
	if err != nil {
		t.Fatal(err)
	}
	placed := filepath.Join(out, "README")
	checkPlaced(t, out, "README", "release notes of 1.0.0", 0o644)
	if err := os.WriteFile(placed, []byte("edited by the user"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(res.Bundle.Dir, "README")); err != nil || string(got) != "release notes of 1.0.0" {
		t.Errorf("an edit of the placed file changed the bundle's: %q %v", got, err)
	}
}

func checkPlaced(t *testing.T, out, name, content string, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(out, name)
	got, err := os.ReadFile(p)
	if err != nil || string(got) != content {
		t.Errorf("%s holds %q (%v), want %q", name, got, err, content)
		return
	}
	if fi, err := os.Stat(p); err != nil || runtime.GOOS != "windows" && fi.Mode().Perm() != mode {
		t.Errorf("%s: mode %v (%v), want %v", name, fi.Mode(), err, mode)
	}
}

// publishedOne publishes release 1.0.0 (releaseDir) with key testKey(t, b)
// on a new test network, and returns the network, a context for the test,
// the key and the publisher's client.
func publishedOne(t *testing.T, b byte) (*testNet, context.Context, *signer.PrivateKey, *Client) {
	t.Helper()
	n := newTestNet(t)
	ctx := ctxFor(t, 2*time.Minute)
	key := testKey(t, b)
	pub := n.client(false)
	if _, err := pub.Publish(ctx, PublishOptions{Key: key, Version: record.MustParseVersion("1.0.0"),
		Sources: []transfer.Source{{Path: releaseDir(t, "1.0.0")}}}); err != nil {
		t.Fatal(err)
	}
	return n, ctx, key, pub
}
