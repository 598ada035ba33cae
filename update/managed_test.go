package update

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
)

// TestManaged: an executable linked into a Homebrew Cellar, one a dpkg
// package lists (this system's ls, and one in a list of the test's own),
// are refused with ErrManaged by CheckPermissions, saying why, unless
// Config.AllowManaged; one in a plain folder is not.
func TestManaged(t *testing.T) {
	key, err := signer.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	updater := func(exe string, allow bool) *Updater {
		u, err := New(Config{Key: key.PublicKey(), Version: record.MustParseVersion("1.0.0"), Executable: exe, DataDir: t.TempDir(), AllowManaged: allow})
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	write := func(p string) string {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("app"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	root := t.TempDir()
	brewed := write(filepath.Join(root, "Cellar", "app", "1.0.0", "bin", "app"))
	link := filepath.Join(root, "bin", "app")
	os.MkdirAll(filepath.Dir(link), 0o755)
	if err := os.Symlink(brewed, link); err != nil {
		t.Fatal(err)
	}
	packaged := write(filepath.Join(root, "usr", "bin", "tool"))
	info := t.TempDir()
	if err := os.WriteFile(filepath.Join(info, "tool.list"), []byte("/.\n"+filepath.Dir(packaged)+"\n"+packaged+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name, exe, msg string
	}{
		{"symbolic link into a Homebrew Cellar", link, "is in a Homebrew Cellar"},
		{"listed by a dpkg package", packaged, "belongs to the dpkg package tool"},
	}
	if ls, err := filepath.EvalSymlinks("/usr/bin/ls"); err == nil && dpkgOwner(ls) != "" {
		cases = append(cases, struct{ name, exe, msg string }{"this system's ls", ls, "belongs to the dpkg package coreutils"})
	}
	saved := dpkgInfo
	t.Cleanup(func() { dpkgInfo = saved })
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dpkgInfo = saved
			if tc.exe == packaged {
				dpkgInfo = info
			}
			err := updater(tc.exe, false).CheckPermissions()
			if !errors.Is(err, ErrManaged) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want ErrManaged saying %q", err, tc.msg)
			}
			t.Log(err)
			if !strings.HasPrefix(tc.exe, root) {
				return // not to write a test file into the system's folder
			}
			if err := updater(tc.exe, true).CheckPermissions(); errors.Is(err, ErrManaged) {
				t.Fatalf("with AllowManaged: %v", err)
			}
		})
	}
	dpkgInfo = info
	if err := updater(write(filepath.Join(root, "opt", "app")), false).CheckPermissions(); err != nil {
		t.Fatalf("a plain executable: %v", err)
	}
}
