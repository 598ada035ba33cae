package relay

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/relay-sh/relay/internal/atomicfile"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/transfer"
)

// early decrypts the files of an encrypted release while the fetch
// downloads them (transfer.FetchRequest.Tee): each ciphertext is fed to
// its own goroutine in order as its pieces are verified, and the plaintext
// is written, hashed and checked against the sealed manifest into a
// temporary file in a folder of the data folder (earlyDir), beside the
// download instead of after it. Placing a file takes its temporary
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
	r := newChanReader()
	go func() {
		defer close(ef.done)
		ef.err = decryptTo(tmp, r, pf, e.ids)
		r.drain()
	}()
	return &earlyWriter{chanReader: r, ef: ef}
}

// earlyWriter is the transfer.Checker early.tee returns: the ciphertext
// written to it is checked by its decryption, which authenticates every
// age chunk and compares the plaintext with the sealed manifest.
type earlyWriter struct {
	*chanReader
	ef *earlyFile
}

var _ transfer.Checker = (*earlyWriter)(nil)

// Close ends the ciphertext and waits for its decryption to end.
func (w *earlyWriter) Close() error {
	w.chanReader.Close()
	<-w.ef.done
	return nil
}

// Checked reports whether the ciphertext written decrypted, whole, to the
// plaintext the sealed manifest names. It is valid once Close returned.
func (w *earlyWriter) Checked() bool { return w.ef.err == nil }

// earlyQueue is how many buffers of ciphertext (up to 1 MiB each, as the
// fetch reads them) wait for a file's decryption at most.
const earlyQueue = 8

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

// chanReader is an io.Reader of the buffers written to it (copies), in
// order: a pipe that lets its writer run ahead by up to earlyQueue
// buffers.
type chanReader struct {
	ch     chan []byte
	free   chan []byte // buffers read, for Write to fill again
	cur    []byte
	buf    []byte // cur's whole buffer
	closed bool
}

func newChanReader() *chanReader {
	return &chanReader{ch: make(chan []byte, earlyQueue), free: make(chan []byte, earlyQueue+1)}
}

// Write queues a copy of b.
func (r *chanReader) Write(b []byte) (int, error) {
	var c []byte
	select {
	case c = <-r.free:
	default:
	}
	r.ch <- append(c[:0], b...)
	return len(b), nil
}

// Close ends what Read returns with io.EOF.
func (r *chanReader) Close() error {
	if !r.closed {
		r.closed = true
		close(r.ch)
	}
	return nil
}

func (r *chanReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		r.recycle()
		b, ok := <-r.ch
		if !ok {
			return 0, io.EOF
		}
		r.cur, r.buf = b, b
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// recycle hands the buffer read last back to Write.
func (r *chanReader) recycle() {
	if r.buf != nil {
		select {
		case r.free <- r.buf:
		default:
		}
		r.buf = nil
	}
}

// drain reads and drops what is still written, until Close, so that
// Write never blocks once the reader stopped early.
func (r *chanReader) drain() {
	r.recycle()
	for b := range r.ch {
		r.buf = b
		r.recycle()
	}
}
