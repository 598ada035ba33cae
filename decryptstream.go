package relay

import (
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/relay-sh/relay/internal/agestream"
	"github.com/relay-sh/relay/internal/atomicfile"
	"github.com/relay-sh/relay/internal/diskio"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/transfer"
)

// early decrypts the files of an encrypted release while the fetch
// downloads them (transfer.FetchRequest.Tee): each ciphertext is
// decrypted in order as its pieces are verified, in a goroutine of its own
// (the fetch computes no SHA-256 of a ciphertext it decrypts:
// transfer.Checker), and the plaintext is written, hashed and
// checked against the sealed manifest into a temporary file in a folder
// of the data folder (earlyDir), beside the download instead of after it. Placing a file takes its temporary
// file (place) rather than decrypting the bundle's copy; a file it has none
// for (the data folder held its ciphertext before, or decrypting it
// failed) is decrypted from the bundle as before.
type early struct {
	dir    string                // where the plaintexts are written (earlyDir)
	sealed func() *record.Sealed // the sealed manifest, once opened
	ids    []Identity

	mu    sync.Mutex
	files map[string]*earlyFile // by plaintext path, not yet placed
}

type earlyFile struct {
	tmp  *atomicfile.File
	err  error
	done chan struct{}
}

// tee starts decrypting ciphertext file blob of the bundle; nil when the
// sealed manifest does not list it or no temporary file can be made.
func (e *early) tee(blob record.File) io.WriteCloser {
	s := e.sealed()
	if s == nil {
		return nil
	}
	var pf record.File
	found := false
	for _, f := range s.Files {
		if s.Blob(f) == blob.Path {
			pf, found = f, true
			break
		}
	}
	if !found {
		return nil
	}
	target := filepath.Join(e.dir, filepath.FromSlash(pf.Path))
	e.mu.Lock()
	if e.files == nil {
		// What a run that was killed left here.
		os.RemoveAll(e.dir)
		e.files = make(map[string]*earlyFile)
	}
	e.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
		return nil
	}
	tmp, err := atomicfile.CreateMasked(target, safeMode(pf.Mode))
	if err != nil {
		return nil
	}
	ef := &earlyFile{tmp: tmp, done: make(chan struct{})}
	e.mu.Lock()
	if old := e.files[pf.Path]; old != nil {
		<-old.done
		old.tmp.Abort()
	}
	e.files[pf.Path] = ef
	e.mu.Unlock()
	return newEarlyWriter(tmp, blob, pf, e.ids, ef)
}

// earlyWriter is the transfer.Checker early.tee returns: it decrypts the
// ciphertext written to it as it comes (agestream, which authenticates
// every age chunk), writes the plaintext to the temporary file and checks
// it against the sealed manifest. The decryption runs in a goroutine of
// its own, beside the fetch's reading of the next pieces: Write queues a
// copy of what it is given, up to earlyQueue buffers.
type earlyWriter struct {
	d       *agestream.Decrypter
	ew      *errWriter // the temporary file
	h       hash.Hash  // the plaintext's SHA-256
	n       int64      // plaintext bytes
	pf      record.File
	ef      *earlyFile
	queue   chan []byte
	free    chan []byte // buffers decrypted, for Write to fill again
	stopped chan struct{}
	end     bool
}

// earlyQueue is how many buffers of ciphertext (up to 1 MiB each, as the
// fetch reads them) wait for a file's decryption at most.
const earlyQueue = 8

var _ transfer.Checker = (*earlyWriter)(nil)

func newEarlyWriter(tmp *atomicfile.File, blob, pf record.File, ids []Identity, ef *earlyFile) *earlyWriter {
	w := &earlyWriter{ew: &errWriter{w: tmp, wb: diskio.NewWriteback(tmp.Name())}, h: sha256.New(), pf: pf, ef: ef,
		queue: make(chan []byte, earlyQueue), free: make(chan []byte, earlyQueue+1), stopped: make(chan struct{})}
	w.d = agestream.NewDecrypter(plainSink{w}, blob.Size, ids...)
	go func() {
		defer close(w.stopped)
		for b := range w.queue {
			w.d.Write(b)
			select {
			case w.free <- b:
			default:
			}
		}
	}()
	return w
}

// plainSink takes the plaintext the Decrypter authenticated.
type plainSink struct{ w *earlyWriter }

func (s plainSink) Write(p []byte) (int, error) {
	w := s.w
	if w.n += int64(len(p)); w.n > w.pf.Size {
		return 0, fmt.Errorf("%w: %s has over %d bytes, the manifest says %d", record.ErrFileMismatch, w.pf.Path, w.pf.Size, w.pf.Size)
	}
	w.h.Write(p)
	return w.ew.Write(p)
}

// Write queues a copy of p, the ciphertext's next bytes, for decryption.
func (w *earlyWriter) Write(p []byte) (int, error) {
	var b []byte
	select {
	case b = <-w.free:
	default:
	}
	w.queue <- append(b[:0], p...)
	return len(p), nil
}

// Close ends the ciphertext and checks the plaintext.
func (w *earlyWriter) Close() error {
	if w.end {
		return nil
	}
	w.end = true
	close(w.queue)
	<-w.stopped
	defer close(w.ef.done)
	defer w.ew.wb.Close()
	err := w.d.Close()
	switch {
	case w.ew.err != nil:
		err = fmt.Errorf("failed to write %s: %w", w.pf.Path, w.ew.err)
	case err != nil:
		err = fmt.Errorf("%w: %s does not decrypt: %v", record.ErrFileMismatch, w.pf.Path, err)
	case w.n != w.pf.Size:
		err = fmt.Errorf("%w: %s has %d bytes, the manifest says %d", record.ErrFileMismatch, w.pf.Path, w.n, w.pf.Size)
	case record.Digest(w.h.Sum(nil)) != w.pf.SHA256:
		err = fmt.Errorf("%w: %s has sha-256 %s, the manifest says %s", record.ErrFileMismatch, w.pf.Path, record.Digest(w.h.Sum(nil)), w.pf.SHA256)
	}
	w.ef.err = err
	return nil
}

// Checked reports whether the ciphertext written decrypted, whole, to the
// plaintext the sealed manifest names. It is valid once Close returned.
func (w *earlyWriter) Checked() bool { return w.ef.err == nil }

// place returns the temporary file to commit as target, holding f
// decrypted and checked while it downloaded, or nil if there is none (the
// caller decrypts f from the bundle). The file is moved to target's
// folder, or copied there if it is on another file system.
func (e *early) place(target string, f record.File, mode fs.FileMode) *atomicfile.File {
	if e == nil {
		return nil
	}
	e.mu.Lock()
	ef := e.files[f.Path]
	delete(e.files, f.Path)
	e.mu.Unlock()
	if ef == nil {
		return nil
	}
	<-ef.done
	if ef.err != nil {
		ef.tmp.Abort()
		return nil
	}
	// Moved to target's folder, or copied across file systems.
	name := ef.tmp.Name()
	ef.tmp.Close()
	p, err := moveOrCopy(target, name, f, mode)
	os.Remove(name) // what a copy left behind; a move took it already
	if err != nil {
		return nil
	}
	return p
}

// close removes the temporary files no placement took, and the folder
// they were made in.
func (e *early) close() {
	if e == nil {
		return
	}
	e.mu.Lock()
	files, started := e.files, e.files != nil
	e.files = nil
	e.mu.Unlock()
	for _, ef := range files {
		<-ef.done
		ef.tmp.Abort()
	}
	if started {
		os.RemoveAll(e.dir)
		os.Remove(filepath.Dir(e.dir)) // plain/, if it holds nothing else
	}
}

// earlyDir is where the files of the encrypted release ih are decrypted
// while it downloads, in dataDir.
func earlyDir(dataDir string, ih record.Infohash) string {
	return filepath.Join(dataDir, "plain", ".early-"+ih.String())
}
