package update_test

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/transfer"
	"github.com/relay-sh/relay/update"
)

// newUpdater returns an updater of exe at version v following key on the
// local DHT, with a data folder of its own.
func newUpdater(t *testing.T, key signer.PublicKey, v, exe string, hc *update.HealthCheck) *update.Updater {
	t.Helper()
	return newUpdaterIn(t, t.TempDir(), key, v, exe, hc)
}

// newUpdaterIn is newUpdater with the data folder dataDir.
func newUpdaterIn(t *testing.T, dataDir string, key signer.PublicKey, v, exe string, hc *update.HealthCheck) *update.Updater {
	t.Helper()
	u, err := update.New(update.Config{
		Key:         key,
		Version:     record.MustParseVersion(v),
		Executable:  exe,
		Bootstrap:   []string{bootstrap(t)},
		Listen:      "127.0.0.1:0",
		DataDir:     dataDir,
		HealthCheck: hc,
		Logger:      testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestCheckApply: Check finds a newer release, fetching its manifest
// alone and touching nothing, and says what Apply would install and fetch; Apply installs the release's file for this platform
// over the executable, keeping its mode and leaving nothing beside it;
// then both say up to date, as does an updater of the new version.
func TestCheckApply(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, time.Minute)
	key := newKey(t)
	pub := publisher(t)
	rel := t.TempDir()
	publish(t, pub, key, "2.0.0",
		writeFile(t, rel, "app_"+runtime.GOOS+"_"+runtime.GOARCH, "app 2.0.0", 0o755),
		writeFile(t, rel, "app_plan9_386", "app 2.0.0 for plan9", 0o755),
		writeFile(t, rel, "README", "notes", 0o644))

	dir := t.TempDir()
	exe := writeFile(t, dir, "app", "app 1.0.0", 0o750)
	dataDir := t.TempDir()
	u := newUpdaterIn(t, dataDir, key.PublicKey(), "1.0.0", exe, nil)

	found, err := u.Check(ctx)
	if err != nil || found == nil || found.Version.String() != "2.0.0" || found.Manifest == nil ||
		found.File.Path != "app_"+runtime.GOOS+"_"+runtime.GOARCH || found.Size != int64(len("app 2.0.0")+len("notes")) {
		t.Fatalf("check: %+v, %v", found, err)
	}
	if got, _ := os.ReadFile(exe); string(got) != "app 1.0.0" {
		t.Fatalf("check changed the executable: %q", got)
	}

	got, err := u.Apply(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version.String() != "2.0.0" || got.File.Path != "app_"+runtime.GOOS+"_"+runtime.GOARCH || got.Manifest == nil {
		t.Fatalf("apply: %+v", got)
	}
	if b, _ := os.ReadFile(exe); string(b) != "app 2.0.0" {
		t.Fatalf("executable holds %q", b)
	}
	if fi, err := os.Stat(exe); err != nil || (runtime.GOOS != "windows" && fi.Mode().Perm() != 0o750) {
		t.Fatalf("executable mode: %v, %v; want 0750 kept", fi.Mode(), err)
	}
	onlyFile(t, dir, "app")

	for name, u := range map[string]*update.Updater{
		"same updater":                       u,
		"updater of 2.0.0":                   newUpdater(t, key.PublicKey(), "2.0.0", exe, nil),
		"updater of 2.0.0, same data folder": newUpdaterIn(t, dataDir, key.PublicKey(), "2.0.0", exe, nil),
	} {
		if r, err := u.Check(ctx); r != nil || err != nil {
			t.Errorf("%s: check after apply: %+v, %v", name, r, err)
		}
		if r, err := u.Apply(ctx); r != nil || err != nil {
			t.Errorf("%s: apply after apply: %+v, %v", name, r, err)
		}
	}
	if b, _ := os.ReadFile(exe); string(b) != "app 2.0.0" {
		t.Fatalf("executable holds %q", b)
	}

	// 1.0.0 is put back by other means: the data folder accepted 2.0.0,
	// but 1.0.0 runs, so 2.0.0 is found and installed again.
	writeFile(t, dir, "app", "app 1.0.0", 0o750)
	u = newUpdaterIn(t, dataDir, key.PublicKey(), "1.0.0", exe, nil)
	if r, err := u.Check(ctx); err != nil || r == nil || r.Version.String() != "2.0.0" {
		t.Fatalf("check with 1.0.0 put back: %+v, %v", r, err)
	}
	if r, err := u.Apply(ctx); err != nil || r == nil || r.Version.String() != "2.0.0" {
		t.Fatalf("apply with 1.0.0 put back: %+v, %v", r, err)
	}
	if b, _ := os.ReadFile(exe); string(b) != "app 2.0.0" {
		t.Fatalf("executable holds %q", b)
	}
}

// TestApplyKeepsOneBundle: the data folder is a cache; after each Apply
// it holds the installed release's bundle only.
func TestApplyKeepsOneBundle(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, time.Minute)
	key := newKey(t)
	pub := publisher(t)
	exe := writeFile(t, t.TempDir(), "app", "app 1.0.0", 0o755)
	dataDir := t.TempDir()
	for _, v := range []string{"2.0.0", "3.0.0"} {
		p := publish(t, pub, key, v, writeFile(t, t.TempDir(), "app_"+runtime.GOOS+"_"+runtime.GOARCH, "app "+v, 0o755))
		current := map[string]string{"2.0.0": "1.0.0", "3.0.0": "2.0.0"}[v]
		if r, err := newUpdaterIn(t, dataDir, key.PublicKey(), current, exe, nil).Apply(ctx); err != nil || r == nil || r.Version.String() != v {
			t.Fatalf("apply %s: %+v, %v", v, r, err)
		}
		ihs, err := transfer.ListBundles(transfer.BundlesDir(dataDir))
		if err != nil || len(ihs) != 1 || ihs[0] != p.Bundle.Infohash {
			t.Fatalf("after applying %s the data folder holds bundles %v (%v), want only %s", v, ihs, err, p.Bundle.Infohash)
		}
	}
	if b, _ := os.ReadFile(exe); string(b) != "app 3.0.0" {
		t.Fatalf("executable holds %q", b)
	}
}

// TestApplyNoExecutable: a release with two files for this platform, or
// none, is refused with ErrNoExecutable and the executable stays.
func TestApplyNoExecutable(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, time.Minute)
	pub := publisher(t)
	plat := "_" + runtime.GOOS + "_" + runtime.GOARCH
	for name, files := range map[string][]string{
		"two":  {"app" + plat, "tool" + plat},
		"none": {"app_plan9_386", "README"},
	} {
		t.Run(name, func(t *testing.T) {
			key := newKey(t)
			rel := t.TempDir()
			var paths []string
			for _, f := range files {
				paths = append(paths, writeFile(t, rel, f, f, 0o755))
			}
			publish(t, pub, key, "2.0.0", paths...)
			dir := t.TempDir()
			exe := writeFile(t, dir, "app", "app 1.0.0", 0o755)
			got, err := newUpdater(t, key.PublicKey(), "1.0.0", exe, nil).Apply(ctx)
			if !errors.Is(err, update.ErrNoExecutable) {
				t.Fatalf("apply: %+v, %v; want ErrNoExecutable", got, err)
			}
			t.Logf("refused: %v", err)
			if got == nil || got.Version.String() != "2.0.0" {
				t.Errorf("the refused release is not named: %+v", got)
			}
			if b, _ := os.ReadFile(exe); string(b) != "app 1.0.0" {
				t.Fatalf("executable holds %q", b)
			}
			onlyFile(t, dir, "app")
		})
	}
}

// TestApplyHealthCheck: with a health check, the new executable is kept
// only if it exits 0 within the timeout and prints its version; otherwise
// the old file (the same file, not a copy) is back and the error says why.
func TestApplyHealthCheck(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the new executables here are shell scripts")
	}
	t.Parallel()
	pub := publisher(t)
	for _, tc := range []struct {
		name, script string
		timeout      time.Duration
		fail         string // part of the error; "" for a kept update
	}{
		{"answers", `[ "$1" = --relay-health-check ] || exit 9; echo 2.0.0`, 0, ""},
		{"exits 3", `echo 2.0.0; echo "cannot open the database" >&2; exit 3`, 0, "exit status 3: cannot open the database"},
		{"another version", `echo 1.9.0`, 0, `answered "1.9.0", not its version 2.0.0`},
		{"hangs", `echo 2.0.0; exec sleep 30`, 500 * time.Millisecond, "did not answer within 500ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := ctxFor(t, time.Minute)
			key := newKey(t)
			rel := t.TempDir()
			publish(t, pub, key, "2.0.0", writeFile(t, rel, "app_"+runtime.GOOS+"_"+runtime.GOARCH, "#!/bin/sh\n"+tc.script+"\n", 0o755))
			dir := t.TempDir()
			exe := writeFile(t, dir, "app", "#!/bin/sh\necho 1.0.0\n", 0o750)
			before, _ := os.Stat(exe)
			u := newUpdater(t, key.PublicKey(), "1.0.0", exe, &update.HealthCheck{Timeout: tc.timeout})
			start := time.Now()
			got, err := u.Apply(ctx)
			if tc.fail == "" {
				if err != nil || got == nil {
					t.Fatalf("apply: %+v, %v", got, err)
				}
				if b, _ := os.ReadFile(exe); !strings.Contains(string(b), "echo 2.0.0") {
					t.Fatalf("executable holds %q", b)
				}
				onlyFile(t, dir, "app")
				return
			}
			if !errors.Is(err, update.ErrHealthCheck) || !strings.Contains(err.Error(), tc.fail) {
				t.Fatalf("apply: %v; want ErrHealthCheck saying %q", err, tc.fail)
			}
			t.Logf("refused after %v: %v", time.Since(start).Round(time.Millisecond), err)
			after, err := os.Stat(exe)
			if err != nil || !os.SameFile(before, after) || after.Mode() != before.Mode() {
				t.Fatalf("the old executable is not back: %v", err)
			}
			if b, _ := os.ReadFile(exe); string(b) != "#!/bin/sh\necho 1.0.0\n" {
				t.Fatalf("executable holds %q", b)
			}
			onlyFile(t, dir, "app")
			// Not accepted: the next Apply tries again.
			if _, err := u.Apply(ctx); !errors.Is(err, update.ErrHealthCheck) {
				t.Fatalf("second apply: %v", err)
			}
		})
	}
}

// TestNewRefusesBadConfig: a key and a version are required.
func TestNewRefusesBadConfig(t *testing.T) {
	exe := writeFile(t, t.TempDir(), "app", "x", 0o755)
	key := newKey(t).PublicKey()
	v := record.MustParseVersion("1.0.0")
	for name, cfg := range map[string]update.Config{
		"no key":      {Version: v, Executable: exe},
		"no version":  {Key: key, Executable: exe},
		"bad channel": {Key: key, Version: v, Executable: exe, Channel: "Not A Label"},
		"no file":     {Key: key, Version: v, Executable: filepath.Join(t.TempDir(), "missing")},
	} {
		if _, err := update.New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	u, err := update.New(update.Config{Key: key, Version: v})
	if err != nil {
		t.Fatal(err)
	}
	if self, _ := os.Executable(); filepath.Base(u.Executable()) != filepath.Base(self) {
		t.Errorf("default executable %s, want this test binary %s", u.Executable(), self)
	}
}
