package transfer

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/relay-sh/relay/record"
)

// TestMakeSharesSameFiles: a bundle made beside another shares (hard
// links) each file whose path, mode and bytes are the other's, and only
// those; a file of the other bundle that changed since its state was
// saved, or of a bundle with no state (a download), is not shared. Every
// file of the new bundle holds its source's bytes.
func TestMakeSharesSameFiles(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	make1 := func(v string, src string) *Bundle {
		t.Helper()
		b, err := Make(context.Background(), MakeOptions{
			Dir: root, Key: testKey(t), Version: record.MustParseVersion(v), Published: testTime,
			Sources: []Source{{Path: src}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	src1, src2 := t.TempDir(), t.TempDir()
	writeRandom(t, filepath.Join(src1, "lib.so"), 300<<10, 1, 0o644)
	writeRandom(t, filepath.Join(src1, "app"), 100<<10, 2, 0o755)
	writeRandom(t, filepath.Join(src1, "data"), 3<<20, 3, 0o644)
	writeRandom(t, filepath.Join(src1, "tool"), 10<<10, 4, 0o644)
	b1 := make1("1.0.0", src1)

	writeRandom(t, filepath.Join(src2, "lib.so"), 300<<10, 1, 0o644) // the same
	writeRandom(t, filepath.Join(src2, "app"), 100<<10, 5, 0o755)    // changed
	writeRandom(t, filepath.Join(src2, "tool"), 10<<10, 4, 0o755)    // the same bytes, another mode
	// The same size, the same first 2 MiB, another end.
	copyTestFile(t, filepath.Join(src1, "data"), filepath.Join(src2, "data"))
	f, err := os.OpenFile(filepath.Join(src2, "data"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("another end"), 3<<20-20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	b2 := make1("1.1.0", src2)

	for name, want := range map[string]bool{"lib.so": true, "app": false, "data": false, "tool": false} {
		if got := sameFile(t, filepath.Join(b1.Dir, name), filepath.Join(b2.Dir, name)); got != want {
			t.Errorf("%s shared: %v, want %v", name, got, want)
		}
		sameContent(t, filepath.Join(b2.Dir, name), filepath.Join(src2, name))
	}
	for _, mf := range b2.Manifest.Files {
		if got := record.SHA256(readTestFile(t, filepath.Join(b2.Dir, mf.Path))); got != mf.SHA256 {
			t.Errorf("%s: sha-256 %s, the manifest says %s", mf.Path, got, mf.SHA256)
		}
	}

	// Two bundles hold an app of that size and mode, different ones: the
	// one with the same bytes is shared.
	src2b := t.TempDir()
	copyTestFile(t, filepath.Join(src1, "app"), filepath.Join(src2b, "app"))
	b2b := make1("1.1.5", src2b)
	if !sameFile(t, filepath.Join(b1.Dir, "app"), filepath.Join(b2b.Dir, "app")) {
		t.Error("app not shared with the bundle that holds the same bytes")
	}
	sameContent(t, filepath.Join(b2b.Dir, "app"), filepath.Join(src1, "app"))
	src2c := t.TempDir()
	copyTestFile(t, filepath.Join(src2, "app"), filepath.Join(src2c, "app"))
	b2c := make1("1.1.6", src2c)
	if !sameFile(t, filepath.Join(b2.Dir, "app"), filepath.Join(b2c.Dir, "app")) {
		t.Error("app not shared with the other bundle that holds the same bytes")
	}

	// Changed on disk since the states were saved: not shared.
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(b1.Dir, "lib.so"), later, later); err != nil {
		t.Fatal(err)
	}
	src3 := t.TempDir()
	copyTestFile(t, filepath.Join(src2, "lib.so"), filepath.Join(src3, "lib.so"))
	b3 := make1("1.2.0", src3)
	if sameFile(t, filepath.Join(b1.Dir, "lib.so"), filepath.Join(b3.Dir, "lib.so")) {
		t.Error("lib.so shared with a file changed since its bundle's state was saved")
	}
	sameContent(t, filepath.Join(b3.Dir, "lib.so"), filepath.Join(src3, "lib.so"))

	// A bundle without a state file (a download in progress) offers
	// nothing.
	for _, b := range []*Bundle{b1, b2, b2b, b2c, b3} {
		if err := os.Remove(filepath.Join(root, b.Infohash.String(), stateName)); err != nil {
			t.Fatal(err)
		}
	}
	copyTestFile(t, filepath.Join(src2, "app"), filepath.Join(src3, "app"))
	b4 := make1("1.3.0", src3)
	if sameFile(t, filepath.Join(b2.Dir, "app"), filepath.Join(b4.Dir, "app")) {
		t.Error("app shared with a bundle that has no state")
	}
}

func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	sa, err := os.Stat(a)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := os.Stat(b)
	if err != nil {
		t.Fatal(err)
	}
	return os.SameFile(sa, sb)
}

func readTestFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func copyTestFile(t *testing.T, from, to string) {
	t.Helper()
	st, err := os.Stat(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, readTestFile(t, from), st.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
}
