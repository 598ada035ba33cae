package transfer

import (
	"bytes"
	"context"
	"crypto/sha1"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/storage"
)

// openPieces opens a two-file torrent of 4 pieces of 64 KiB in real file
// storage under dir and returns its pieces, each written through w.
func openPieces(t *testing.T, dir string, w *writeBehind) []behindPiece {
	t.Helper()
	const pieceLen = 64 << 10
	info := &metainfo.Info{
		Name: "bundle", PieceLength: pieceLen,
		Files:  []metainfo.FileInfo{{Path: []string{"a"}, Length: 3 * pieceLen / 2}, {Path: []string{"b"}, Length: 5 * pieceLen / 2}},
		Pieces: make([]byte, 4*sha1.Size),
	}
	s := storage.NewFileOpts(storage.NewFileClientOpts{ClientBaseDir: dir, Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { s.Close() })
	ti, err := s.OpenTorrent(context.Background(), info, metainfo.Hash{1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ti.Close() })
	var ps []behindPiece
	for i := range info.NumPieces() {
		p := info.Piece(i)
		ps = append(ps, behindPiece{PieceImpl: ti.Piece(p), w: w, index: i, length: p.Length()})
	}
	return ps
}

// TestWriteBehindReadsWhatWasWritten: a piece read at once after its
// chunks were handed over (as the torrent library hashes a piece as soon
// as its last chunk is written) reads every byte of them, across the two
// files the piece spans, and nothing is lost when the writer stops and
// starts again between chunks.
func TestWriteBehindReadsWhatWasWritten(t *testing.T) {
	w := newWriteBehind(func(err error) { t.Errorf("write failed: %v", err) })
	ps := openPieces(t, t.TempDir(), w)
	data := make([]byte, 64<<10)
	for i := range data {
		data[i] = byte(i * 7)
	}
	for round := range 20 {
		p := ps[1] // spans the end of a and the start of b
		for off := 0; off < len(data); off += chunkSize {
			data[off] = byte(round)
			if n, err := p.WriteAt(data[off:off+chunkSize], int64(off)); err != nil || n != chunkSize {
				t.Fatalf("write: %d, %v", n, err)
			}
		}
		var got bytes.Buffer
		if _, err := p.WriteTo(&got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), data) {
			t.Fatalf("round %d: the piece read back differs from what was written", round)
		}
		b := make([]byte, 100)
		if _, err := p.ReadAt(b, chunkSize); err != nil || !bytes.Equal(b, data[chunkSize:chunkSize+100]) {
			t.Fatalf("round %d: ReadAt: %v", round, err)
		}
	}
	w.close()
	if n, err := ps[0].WriteAt(data[:chunkSize], 0); err != nil || n != chunkSize {
		t.Fatalf("write after close: %d, %v; want it dropped", n, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.running || len(w.queue) > 0 || w.queued != 0 || len(w.pending) > 0 {
		t.Errorf("after close: running %v, %d queued (%d bytes), pending %v", w.running, len(w.queue), w.queued, w.pending)
	}
}

// TestWriteBehindFailure: a chunk that cannot be written (here the
// bundle's folder is a file) is reported once; its piece then reads as
// failed, not as data the peers sent wrong, and later writes fail at once.
func TestWriteBehindFailure(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bundle"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var reported []error
	w := newWriteBehind(func(err error) {
		mu.Lock()
		reported = append(reported, err)
		mu.Unlock()
	})
	ps := openPieces(t, dir, w)
	chunk := make([]byte, chunkSize)
	for off := int64(0); off < 64<<10; off += chunkSize {
		if _, err := ps[2].WriteAt(chunk, off); err != nil {
			break // the first failure may already have landed
		}
	}
	_, err := ps[2].WriteTo(new(bytes.Buffer))
	if !errors.Is(err, syscall.ENOTDIR) {
		t.Fatalf("reading the piece: %v, want the write's error (not a directory)", err)
	}
	if _, err := ps[3].WriteAt(chunk, 0); !errors.Is(err, syscall.ENOTDIR) {
		t.Errorf("a later write: %v, want the first failure's error", err)
	}
	if err := w.wait(3); err != nil {
		t.Errorf("piece 3, never queued: %v", err)
	}
	w.close()
	mu.Lock()
	defer mu.Unlock()
	if len(reported) != 1 || !errors.Is(reported[0], syscall.ENOTDIR) {
		t.Errorf("reported %v, want the failure once", reported)
	}
}
