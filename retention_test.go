package relay

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/transfer"
)

// versions lists the versions of the bundles in a data folder, newest
// first within a channel, with their status.
func versions(t *testing.T, dataDir string) []string {
	t.Helper()
	u, err := ListData(dataDir, PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, b := range u.Bundles {
		out = append(out, b.Version.String()+" "+string(b.Status))
	}
	return out
}

// Each role keeps what it needs: a publisher its --keep releases, a
// fetch the accepted release only, and a fetch in a folder where a
// seeder recorded --keep 3 as many as the seeder.
func TestRolesKeepReleases(t *testing.T) {
	n := newTestNet(t)
	ctx := ctxFor(t, 2*time.Minute)
	key := testKey(t, 21)
	pub, user, seederFolder := n.client(false), n.client(false), n.client(false)
	if err := seederFolder.recordKeep(key.PublicKey(), "stable", RoleSeed, 3); err != nil {
		t.Fatal(err)
	}
	var prev string
	for _, v := range []string{"1.0.0", "1.1.0", "1.2.0", "1.3.0"} {
		p, err := pub.Publish(ctx, PublishOptions{Key: key, Version: record.MustParseVersion(v), Keep: 2,
			Sources: []transfer.Source{{Path: releaseDir(t, v)}}})
		if err != nil {
			t.Fatal(err)
		}
		res, err := user.Fetch(ctx, FetchOptions{Key: key.PublicKey(), Out: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if prev != "" && (len(res.Pruned) != 1 || res.Pruned[0].Manifest.Version.String() != prev) {
			t.Fatalf("fetch of %s pruned %d bundles, want %s's", v, len(res.Pruned), prev)
		}
		if _, err := seederFolder.Fetch(ctx, FetchOptions{Key: key.PublicKey()}); err != nil {
			t.Fatal(err)
		}
		if v == "1.2.0" && (len(p.Pruned) != 1 || p.Pruned[0].Manifest.Version.String() != "1.0.0") {
			t.Fatalf("publish of 1.2.0 pruned %v, want 1.0.0", p.Pruned)
		}
		prev = v
	}
	for _, c := range []struct {
		name string
		cl   *Client
		want []string
	}{
		{"publisher --keep 2", pub, []string{"1.3.0 kept", "1.2.0 kept"}},
		{"fetch", user, []string{"1.3.0 current"}},
		{"fetch where a seeder keeps 3", seederFolder, []string{"1.3.0 current", "1.2.0 kept", "1.1.0 kept"}},
	} {
		if got := versions(t, c.cl.cfg.DataDir); !slices.Equal(got, c.want) {
			t.Errorf("%s: data folder holds %v, want %v", c.name, got, c.want)
		}
	}
}

// A fetch reports its stages in order, each once, with the release once
// it is known; a publish reports its own.
func TestFetchStages(t *testing.T) {
	n := newTestNet(t)
	ctx := ctxFor(t, time.Minute)
	key := testKey(t, 22)
	pub, user := n.client(false), n.client(false)
	var pubStages []Stage
	if _, err := pub.Publish(ctx, PublishOptions{Key: key, Version: record.MustParseVersion("1.0.0"),
		Sources: []transfer.Source{{Path: releaseDir(t, "1.0.0")}},
		OnStage: func(s Stage, r record.Release) { pubStages = append(pubStages, s) }}); err != nil {
		t.Fatal(err)
	}
	if want := []Stage{StageResolving, StageBundling, StageStoring}; !slices.Equal(pubStages, want) {
		t.Errorf("publish stages %v, want %v", pubStages, want)
	}
	var got []Stage
	var progress int
	_, err := user.Fetch(ctx, FetchOptions{Key: key.PublicKey(), Out: t.TempDir(),
		OnStage: func(s Stage, r record.Release) {
			if s != StageResolving && r.Version.String() != "1.0.0" {
				t.Errorf("stage %s with release %q", s, r.Version)
			}
			got = append(got, s)
		},
		Progress: func(transfer.Progress) { progress++ },
		Install:  func(context.Context, *FetchResult) error { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	// Verifying shows only when the last hashes lag behind the download.
	got = slices.DeleteFunc(got, func(s Stage) bool { return s == StageVerifying })
	if want := []Stage{StageResolving, StageMetadata, StageDownloading, StagePlacing, StageInstalling, StageDone}; !slices.Equal(got, want) {
		t.Errorf("fetch stages %v, want %v", got, want)
	}
	if progress == 0 {
		t.Error("Progress was not called beside OnStage")
	}
}

// ListData and PruneData on bundles made in place: the accepted release is
// kept even when newer ones fill the channel's keep, another channel and
// another key are counted apart, a partial download stays unless asked,
// and a dry run removes nothing.
func TestPruneDataKeepsAccepted(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	data := t.TempDir()
	a, b := testKey(t, 23), testKey(t, 24)
	made := map[string]record.Infohash{}
	mk := func(k *signer.PrivateKey, ch, v string) {
		t.Helper()
		bd, err := transfer.Make(ctx, transfer.MakeOptions{Dir: transfer.BundlesDir(data), Key: k.PublicKey(), Channel: ch,
			Version: record.MustParseVersion(v), Sources: []transfer.Source{{Path: releaseDir(t, v)}}})
		if err != nil {
			t.Fatal(err)
		}
		made[k.PublicKey().String()[:4]+"/"+ch+"/"+v] = bd.Infohash
	}
	for _, v := range []string{"1.0.0", "1.1.0", "1.2.0", "1.3.0"} {
		mk(a, "stable", v)
	}
	mk(a, "beta", "2.0.0-rc.1")
	mk(b, "stable", "0.1.0")
	mk(b, "stable", "0.2.0")
	// a's stable accepted 1.1.0; 1.2.0 and 1.3.0 came later (not yet accepted).
	st := newStateStore(data)
	if err := st.Save(State{Key: a.PublicKey(), Channel: "stable", Infohash: made[a.PublicKey().String()[:4]+"/stable/1.1.0"]}); err != nil {
		t.Fatal(err)
	}
	partial := filepath.Join(transfer.BundlesDir(data), "0123456789abcdef0123456789abcdef01234567")
	if err := os.MkdirAll(partial, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(partial, "piece"), []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	status := func(u *DataUsage) []string {
		var out []string
		for _, sb := range u.Bundles {
			out = append(out, sb.Channel+" "+sb.Version.String()+" "+string(sb.Status))
		}
		slices.Sort(out)
		return out
	}
	u, removed, err := PruneData(data, PruneOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"  partial", // sorted first: no channel, no version
		"beta 2.0.0-rc.1 kept",
		"stable 0.1.0 old", "stable 0.2.0 kept", // b's stable
		"stable 1.0.0 old", "stable 1.1.0 current", "stable 1.2.0 old", "stable 1.3.0 kept",
	}
	if got := status(u); !slices.Equal(got, want) {
		t.Fatalf("statuses\n%v, want\n%v", got, want)
	}
	if len(removed) != 3 || u.Reclaimable == 0 {
		t.Fatalf("a dry run would remove %d bundles, %d bytes; want 3", len(removed), u.Reclaimable)
	}
	if got := versions(t, data); len(got) != 8 {
		t.Fatalf("the dry run removed bundles: %v", got)
	}
	if _, removed, err = PruneData(data, PruneOptions{Partial: true}); err != nil || len(removed) != 4 {
		t.Fatalf("prune removed %d bundles (%v), want 4", len(removed), err)
	}
	u, err = ListData(data, PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := status(u), []string{"beta 2.0.0-rc.1 kept", "stable 0.2.0 kept", "stable 1.1.0 current", "stable 1.3.0 kept"}; !slices.Equal(got, want) {
		t.Fatalf("after prune %v, want %v", got, want)
	}
	if _, err := os.Stat(partial); !os.IsNotExist(err) {
		t.Fatalf("partial download still there: %v", err)
	}
}
