package relay

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/relay-sh/relay/record"
)

func writeFile(t *testing.T, path, content string) record.File {
	t.Helper()
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := os.WriteFile(path, []byte(content), 0o444); err != nil {
		t.Fatal(err)
	}
	return record.File{Size: int64(len(content)), SHA256: record.SHA256([]byte(content)), Mode: 0o755}
}

func TestPlaceFiles(t *testing.T) {
	src, out := t.TempDir(), t.TempDir()
	a := writeFile(t, filepath.Join(src, "bin", "tool"), "tool v2")
	a.Path = "bin/tool"
	b := writeFile(t, filepath.Join(src, "README"), "read me")
	b.Path, b.Mode = "README", 0o644
	os.WriteFile(filepath.Join(out, "README"), []byte("old readme"), 0o644)

	placed, err := placeFiles(src, []record.File{a, b}, out, placement{})
	if err != nil {
		t.Fatal(err)
	}
	if len(placed) != 2 {
		t.Fatalf("placed %v", placed)
	}
	got, _ := os.ReadFile(filepath.Join(out, "bin", "tool"))
	fi, _ := os.Stat(filepath.Join(out, "bin", "tool"))
	if string(got) != "tool v2" || runtime.GOOS != "windows" && fi.Mode().Perm() != 0o755 {
		t.Fatalf("tool: %q %v", got, fi.Mode())
	}

	// A file that differs from its manifest entry: nothing is placed.
	os.WriteFile(filepath.Join(out, "README"), []byte("old readme"), 0o644)
	c := writeFile(t, filepath.Join(src, "c"), "cccc")
	c.Path = "c"
	c.SHA256[0] ^= 1
	if _, err := placeFiles(src, []record.File{b, c}, out, placement{}); !errors.Is(err, record.ErrFileMismatch) {
		t.Fatalf("bad hash: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(out, "README")); string(got) != "old readme" {
		t.Fatalf("README replaced although the set failed: %q", got)
	}
	if _, err := os.Stat(filepath.Join(out, "c")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("c placed")
	}
	// A file longer than its manifest says.
	c = writeFile(t, filepath.Join(src, "c"), "cccc")
	c.Path, c.Size = "c", 3
	if _, err := placeFiles(src, []record.File{c}, out, placement{}); !errors.Is(err, record.ErrFileMismatch) {
		t.Fatalf("long file: %v", err)
	}
	assertNoTemp(t, out)
}

func TestReplaceExecutable(t *testing.T) {
	src, dir := t.TempDir(), t.TempDir()
	target := filepath.Join(dir, "app")
	os.WriteFile(target, []byte("v1"), 0o750)
	f := writeFile(t, filepath.Join(src, "app_linux_amd64"), "v2 binary")
	f.Path = "app_linux_amd64"
	if err := ReplaceExecutable(target, src, f); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(target)
	fi, _ := os.Stat(target)
	if string(got) != "v2 binary" || runtime.GOOS != "windows" && fi.Mode().Perm() != 0o750 {
		t.Fatalf("after install: %q %v", got, fi.Mode())
	}
	bad := f
	bad.SHA256[3] ^= 1
	if err := ReplaceExecutable(target, src, bad); !errors.Is(err, record.ErrFileMismatch) {
		t.Fatalf("bad hash: %v", err)
	}
	if got, _ := os.ReadFile(target); string(got) != "v2 binary" {
		t.Fatalf("target changed by a failed install: %q", got)
	}
	// Leftovers of an interrupted install are cleaned up.
	os.WriteFile(filepath.Join(dir, ".relay-tmp-app-123"), []byte("half"), 0o644)
	CleanupReplaced(target)
	assertNoTemp(t, dir)
}

// TestCleanupReplacedPutsBack checks what CleanupReplaced does with the
// executable moved aside on Windows: removed beside a new executable, put
// back where a kill between the two renames left none.
func TestCleanupReplacedPutsBack(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "app")
	os.WriteFile(target+oldSuffix, []byte("old"), 0o755)
	os.WriteFile(filepath.Join(dir, ".relay-tmp-app-123"), []byte("new"), 0o755)
	CleanupReplaced(target)
	if got, err := os.ReadFile(target); err != nil || string(got) != "old" {
		t.Fatalf("after a kill between the renames: %q, %v; want the old executable back", got, err)
	}
	assertNoTemp(t, dir)
	os.WriteFile(target+oldSuffix, []byte("older"), 0o755)
	CleanupReplaced(target)
	if got, _ := os.ReadFile(target); string(got) != "old" {
		t.Fatalf("the executable in place was replaced by the one moved aside: %q", got)
	}
	if _, err := os.Stat(target + oldSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the executable moved aside is still there: %v", err)
	}
}

func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if d != nil && len(d.Name()) > 11 && d.Name()[:11] == ".relay-tmp-" {
			t.Errorf("temporary file left: %s", p)
		}
		return nil
	})
}

func TestExecutable(t *testing.T) {
	m := &record.Manifest{Version: record.MustParseVersion("1.0.0"), Files: []record.File{
		{Path: "app_linux_amd64", OS: "linux", Arch: "amd64"},
		{Path: "app_darwin_arm64", OS: "darwin", Arch: "arm64"},
		{Path: "README"},
	}}
	if f, err := Executable(m, "linux", "amd64"); err != nil || f.Path != "app_linux_amd64" {
		t.Fatalf("linux/amd64: %v %v", f.Path, err)
	}
	if _, err := Executable(m, "windows", "amd64"); err == nil {
		t.Fatal("windows/amd64: a file was picked")
	}
	one := &record.Manifest{Files: []record.File{{Path: "tool"}}}
	if f, err := Executable(one, "linux", "amd64"); err != nil || f.Path != "tool" {
		t.Fatalf("single file: %v %v", f.Path, err)
	}
	other := &record.Manifest{Files: []record.File{{Path: "tool_darwin_arm64", OS: "darwin", Arch: "arm64"}}}
	if _, err := Executable(other, "linux", "amd64"); err == nil {
		t.Fatal("single file for another platform was picked")
	}
	two := &record.Manifest{Files: []record.File{{Path: "a_linux_amd64", OS: "linux", Arch: "amd64"}, {Path: "b_linux", OS: "linux"}}}
	if _, err := Executable(two, "linux", "amd64"); err == nil || !strings.Contains(err.Error(), "ambiguous") {
		t.Fatalf("two candidates: %v", err)
	}
}

// TestInstallDiskFull: the disk that holds the executable and the --out
// folder is full. Replacing the executable and placing files fail saying
// so, and leave the old executable and the old files whole, with no
// temporary file behind.
func TestInstallDiskFull(t *testing.T) {
	disk := mountSmall(t, 256<<10)
	src := t.TempDir()
	target := filepath.Join(disk, "app")
	if err := os.WriteFile(target, []byte("v1"), 0o750); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(disk, "out")
	os.Mkdir(out, 0o755)
	if err := os.WriteFile(filepath.Join(out, "README"), []byte("old readme"), 0o644); err != nil {
		t.Fatal(err)
	}
	// What is left of the disk goes to a filler file.
	filler, err := os.Create(filepath.Join(disk, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	for err == nil {
		_, err = filler.Write(make([]byte, 4096))
	}
	filler.Close()
	if !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("filling the disk: %v", err)
	}

	f := writeFile(t, filepath.Join(src, "app_linux_amd64"), strings.Repeat("v2 binary ", 1000))
	f.Path = "app_linux_amd64"
	err = ReplaceExecutable(target, src, f)
	t.Logf("install: %v", err)
	if err == nil || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("install onto a full disk: %v, want an error that says the disk is full", err)
	}
	if got, _ := os.ReadFile(target); string(got) != "v1" {
		t.Errorf("the executable holds %q after the failed install, want the old v1", got)
	}
	if fi, err := os.Stat(target); err != nil || fi.Mode().Perm() != 0o750 {
		t.Errorf("the executable's mode after the failed install: %v %v", fi, err)
	}

	readme := writeFile(t, filepath.Join(src, "README"), strings.Repeat("new readme ", 1000))
	readme.Path, readme.Mode = "README", 0o644
	_, err = placeFiles(src, []record.File{f, readme}, out, placement{})
	t.Logf("place: %v", err)
	if err == nil || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("placing files on a full disk: %v, want an error that says the disk is full", err)
	}
	if got, _ := os.ReadFile(filepath.Join(out, "README")); string(got) != "old readme" {
		t.Errorf("README holds %q after the failed placing, want the old one", got)
	}
	if _, err := os.Stat(filepath.Join(out, f.Path)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s placed although the set failed: %v", f.Path, err)
	}
	assertNoTemp(t, disk)
}
