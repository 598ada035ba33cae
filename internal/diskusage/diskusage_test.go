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
