package relay

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/relay-sh/relay/record"
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
