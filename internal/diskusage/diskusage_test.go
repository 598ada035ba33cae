package diskusage

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// TestDirCountsBlocks: a sparse file counts what was written, not its
// length (where the system says); a dense one about its length.
func TestDirCountsBlocks(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dense"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "sub", "sparse"))
	if os.IsNotExist(err) {
		os.Mkdir(filepath.Join(dir, "sub"), 0o755)
		f, err = os.Create(filepath.Join(dir, "sub", "sparse"))
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	u, err := Dir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if u.Files != 2 || u.Modified.IsZero() {
		t.Fatalf("got %+v, want 2 files and a time", u)
	}
	if u.Bytes < 1<<20 {
		t.Fatalf("%d bytes, want at least the dense file's 1 MiB", u.Bytes)
	}
	if runtime.GOOS == "linux" && u.Bytes > 2<<20 {
		t.Fatalf("%d bytes: the 64 MiB sparse file was counted by its length", u.Bytes)
	}
}

// TestLinksCountOnce: a file with two names in a folder counts once; its
// blocks are freed only by removing the folders of both names.
func TestLinksCountOnce(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("hard links are not identified on windows")
	}
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	os.Mkdir(a, 0o755)
	os.Mkdir(b, 0o755)
	if err := os.WriteFile(filepath.Join(a, "shared"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(a, "shared"), filepath.Join(b, "shared")); err != nil {
		t.Skipf("no hard links here: %v", err)
	}
	if err := os.WriteFile(filepath.Join(a, "own"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	u, err := Dir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if u.Files != 2 || u.Bytes < 2<<20 || u.Bytes >= 3<<20 {
		t.Errorf("got %d files, %d bytes; want 2 files, 2 MiB", u.Files, u.Bytes)
	}
	if f, err := Freed(a); err != nil || f < 1<<20 || f >= 2<<20 {
		t.Errorf("removing a frees %d bytes (%v), want its own file's 1 MiB", f, err)
	}
	if f, err := Freed(a, b); err != nil || f < 2<<20 || f >= 3<<20 {
		t.Errorf("removing a and b frees %d bytes (%v), want 2 MiB", f, err)
	}
}
