package relay

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"

	"filippo.io/age"

	"github.com/relay-sh/relay/record"
)

// TestEarlyDecrypt feeds an age ciphertext to early.tee in uneven writes,
// as a fetch hands over the pieces it verified, and places the plaintext:
// whole and checked when the stream is whole; nothing to place (the caller
// decrypts the bundle's copy instead, and fails there) when the stream is
// cut short, altered, or for another file; and the staging folder gone
// after close.
func TestEarlyDecrypt(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	plain := make([]byte, 300<<10+17) // several age chunks, the last one short
	rand.Read(plain)
	var ct bytes.Buffer
	w, err := age.Encrypt(&ct, id.Recipient())
	if err != nil {
		t.Fatal(err)
	}
	w.Write(plain)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	pf := record.File{Path: "bin/tool", Size: int64(len(plain)), SHA256: record.Digest(sha256.Sum256(plain)), Mode: 0o755}
	sealed := &record.Sealed{Manifest: record.Manifest{Files: []record.File{pf}}, Blobs: map[string]string{pf.Path: "0.age"}}
	blob := record.File{Path: "0.age", Size: int64(ct.Len())}

	feed := func(e *early, b []byte) {
		tw := e.tee(blob)
		if tw == nil {
			t.Fatal("tee returned no writer for a file of the sealed manifest")
		}
		for len(b) > 0 {
			n := min(len(b), 1<<20-3, 7919+len(b)/3)
			tw.Write(b[:n])
			b = b[n:]
		}
		tw.Close()
	}
	data := t.TempDir()
	newEarly := func() *early {
		return &early{dir: earlyDir(data, record.Infohash{1}), sealed: func() *record.Sealed { return sealed }, ids: []Identity{id}}
	}

	t.Run("whole", func(t *testing.T) {
		e := newEarly()
		feed(e, ct.Bytes())
		target := filepath.Join(t.TempDir(), "tool")
		p := e.place(target, pf, 0o755)
		if p == nil {
			t.Fatal("nothing to place after a whole stream")
		}
		if err := p.Commit(); err != nil {
			t.Fatal(err)
		}
		e.close()
		got, err := os.ReadFile(target)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("placed %d bytes (%v), want the %d of the plaintext", len(got), err, len(plain))
		}
		if _, err := os.Stat(filepath.Join(data, "plain")); !os.IsNotExist(err) {
			t.Fatalf("the staging folder is still there after close: %v", err)
		}
	})
	altered := bytes.Clone(ct.Bytes())
	altered[len(altered)-100] ^= 1
	for name, b := range map[string][]byte{
		"truncated": ct.Bytes()[:ct.Len()-70<<10],
		"altered":   altered,
		"empty":     nil,
	} {
		t.Run(name, func(t *testing.T) {
			e := newEarly()
			feed(e, b)
			if p := e.place(filepath.Join(t.TempDir(), "tool"), pf, 0o755); p != nil {
				p.Abort()
				t.Fatal("a stream that does not decrypt to the file was placed")
			}
			e.close()
		})
	}
	t.Run("not in the sealed manifest", func(t *testing.T) {
		e := newEarly()
		if tw := e.tee(record.File{Path: "1.age", Size: 5}); tw != nil {
			t.Fatal("tee of a file the sealed manifest does not list")
		}
		e.close()
	})
}
