package diskio

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestCopy: Copy moves exactly n bytes into a file (through the kernel or
// a reflink), into any other writer (a plain copy), across its chunks,
// and says when the source is shorter than n.
func TestCopy(t *testing.T) {
	dir := t.TempDir()
	data := make([]byte, CopyChunk+12345)
	rand.Read(data)
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	open := func() *os.File {
		f, err := os.Open(src)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}

	dst, err := os.Create(filepath.Join(dir, "dst"))
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if n, err := Copy(dst, open(), int64(len(data))); err != nil || n != int64(len(data)) {
		t.Fatalf("copy to a file: %d %v", n, err)
	}
	if got, _ := os.ReadFile(dst.Name()); !bytes.Equal(got, data) {
		t.Fatal("the file copy differs")
	}

	var buf bytes.Buffer
	if n, err := Copy(&buf, open(), 1000); err != nil || n != 1000 || !bytes.Equal(buf.Bytes(), data[:1000]) {
		t.Fatalf("copy of a part to a buffer: %d %v", n, err)
	}

	short, err := os.Create(filepath.Join(dir, "short"))
	if err != nil {
		t.Fatal(err)
	}
	defer short.Close()
	if n, err := Copy(short, open(), int64(len(data))+1); !errors.Is(err, io.ErrUnexpectedEOF) || n != int64(len(data)) {
		t.Fatalf("copy of more than the source holds: %d %v", n, err)
	}
}

// TestWriteback: hints never wait, however many come; Close ends the
// goroutine; a nil Writeback (a file that could not be opened) does
// nothing.
func TestWriteback(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	w := NewWriteback(p)
	if w == nil {
		t.Fatal("no Writeback for an existing file")
	}
	for i := range 1000 {
		w.Hint(int64(i%16)<<16, 1<<16)
	}
	w.Close()
	none := NewWriteback(filepath.Join(t.TempDir(), "missing"))
	none.Hint(0, 1)
	none.Close()
}
