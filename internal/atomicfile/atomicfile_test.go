package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestWriteFileReplaces(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if string(b) != "new" {
		t.Fatalf("content %q", b)
	}
	if fi, _ := os.Stat(p); runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("%d entries left", len(entries))
	}
}

func TestAbortLeavesTarget(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	WriteFile(p, []byte("old"), 0o644)
	f, err := Create(p, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("half"))
	f.Abort()
	f.Abort()
	b, _ := os.ReadFile(p)
	if string(b) != "old" {
		t.Fatalf("content %q", b)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("%d entries left", len(entries))
	}
	if err := f.Commit(); err == nil {
		t.Fatal("commit after abort succeeded")
	}
}

func TestWriteFileMissingFolder(t *testing.T) {
	if err := WriteFile(filepath.Join(t.TempDir(), "no", "f"), nil, 0o644); err == nil {
		t.Fatal("wrote into a missing folder")
	}
}

// RemoveLeftovers removes the temporary files of writes of its target
// only: the target itself and other files' temporary files stay.
func TestRemoveLeftovers(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app")
	if err := WriteFile(p, []byte("whole"), 0o644); err != nil {
		t.Fatal(err)
	}
	mine, err := Create(p, 0o644) // a write killed before its Commit
	if err != nil {
		t.Fatal(err)
	}
	mine.Close()
	var others []*File
	for _, name := range []string{"app2", "app-x", "app-1"} {
		other, err := Create(filepath.Join(dir, name), 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Abort()
		others = append(others, other)
	}
	RemoveLeftovers(p)
	if _, err := os.Stat(mine.Name()); !os.IsNotExist(err) {
		t.Errorf("the target's leftover is still there: %v", err)
	}
	for _, other := range others {
		if _, err := os.Stat(other.Name()); err != nil {
			t.Errorf("another file's temporary file was removed: %v", err)
		}
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "whole" {
		t.Errorf("the target: %q, %v", b, err)
	}
}

// TestAdopt: a file adopted in place of target is moved, not copied: the
// target gets its bytes and mode at Commit and the source is gone; Abort
// puts it back where it was, and a source on another file system is
// refused with the source left in place.
func TestAdopt(t *testing.T) {
	dir := t.TempDir()
	src, target := filepath.Join(dir, "bundle", "f"), filepath.Join(dir, "out", "f")
	os.MkdirAll(filepath.Dir(src), 0o755)
	os.MkdirAll(filepath.Dir(target), 0o755)
	os.WriteFile(target, []byte("old"), 0o644)

	os.WriteFile(src, []byte("new"), 0o444)
	f, err := Adopt(target, src, 0o750)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(target); string(b) != "old" {
		t.Fatalf("target before commit: %q", b)
	}
	f.Abort()
	if b, _ := os.ReadFile(src); string(b) != "new" {
		t.Fatalf("source after abort: %q", b)
	}
	if entries, _ := os.ReadDir(filepath.Dir(target)); len(entries) != 1 {
		t.Fatalf("%d entries in the target's folder after abort", len(entries))
	}

	f, err = Adopt(target, src, 0o750)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(target); string(b) != "new" {
		t.Fatalf("target after commit: %q", b)
	}
	if fi, _ := os.Stat(target); runtime.GOOS != "windows" && fi.Mode().Perm() != 0o750 {
		t.Fatalf("mode %v", fi.Mode())
	}
	if _, err := os.Stat(src); !os.IsNotExist(err) {
		t.Fatalf("source after commit: %v", err)
	}

	// /dev/shm is another file system than the test's folder where it
	// exists (Linux).
	shm, err := os.MkdirTemp("/dev/shm", "adopt")
	if err != nil {
		t.Skip("no /dev/shm to move across file systems from")
	}
	defer os.RemoveAll(shm)
	other := filepath.Join(shm, "f")
	os.WriteFile(other, []byte("elsewhere"), 0o644)
	if _, err := Adopt(target, other, 0o644); err == nil {
		t.Skip("/dev/shm is on the test folder's file system")
	}
	if b, _ := os.ReadFile(other); string(b) != "elsewhere" {
		t.Fatalf("source after a refused move: %q", b)
	}
	if b, _ := os.ReadFile(target); string(b) != "new" {
		t.Fatalf("target after a refused move: %q", b)
	}
}

// TestAdoptRefusesLinked: a file with another name is not adopted (an
// edit of the adopted file would change the other name's too): Adopt fails
// with ErrLinked and changes nothing.
func TestAdoptRefusesLinked(t *testing.T) {
	dir := t.TempDir()
	src, other, target := filepath.Join(dir, "src"), filepath.Join(dir, "other"), filepath.Join(dir, "out", "f")
	os.MkdirAll(filepath.Dir(target), 0o755)
	os.WriteFile(src, []byte("shared"), 0o444)
	if err := os.Link(src, other); err != nil {
		t.Skipf("no hard links here: %v", err)
	}
	if runtime.GOOS == "windows" {
		t.Skip("file information does not count names on windows")
	}
	if _, err := Adopt(target, src, 0o644); !errors.Is(err, ErrLinked) {
		t.Fatalf("Adopt of a linked file: %v, want ErrLinked", err)
	}
	if b, _ := os.ReadFile(src); string(b) != "shared" {
		t.Fatalf("source after the refusal: %q", b)
	}
	if entries, _ := os.ReadDir(filepath.Dir(target)); len(entries) != 0 {
		t.Fatalf("%d entries in the target's folder after the refusal", len(entries))
	}
}
