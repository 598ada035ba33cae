package transfer

import (
	"crypto/sha1"
	"io"
	"sync"

	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/storage"
)

// writeBehindMax bounds the bytes of a bundle's chunks received but not
// yet written; a connection that receives more waits.
const writeBehindMax = 8 << 20

// writeBehind writes a bundle's chunks to its file storage from a
// goroutine of its own. The torrent library writes each chunk in the
// goroutine that reads its connection, so that connection reads nothing
// while the chunk is copied into the page cache: in a 1 GiB fetch from one
// seeder that write was 40% of the reading goroutine's time, and the
// seeder spent the time waiting. Here a write copies the chunk into a
// queue and returns; reads of a piece (the library's hash of it, serving
// it) wait until its chunks are written.
//
// A write that fails (a full disk) is reported once to onErr, and makes
// every later write fail with its error and every piece it was for read
// as failed, so that the piece is not blamed on the peers that sent it.
//
// It also lets the state of a closed bundle be saved once the writes in
// flight have landed: a chunk can still be arriving while its torrent
// closes, and a write after the save would change the file's time and make
// the next start hash the file again. Writes after the close are dropped:
// their torrent is gone, and their pieces are recorded missing.
type writeBehind struct {
	onErr func(error)
	// check, if not nil, hashes each chunk once written, from its
	// buffer: the piece's SHA-1 that SelfHash answers with, and the
	// SHA-256 of its file (hashing.go). It hashes in a goroutine of its
	// own, beside the writer: on two cores, writing and hashing one
	// chunk after the other in one goroutine held the download back.
	check *pieceCheck

	mu      sync.Mutex
	changed *sync.Cond // a write landed, the writer stopped, or close began
	queue   []chunkWrite
	hashes  []chunkWrite // written, to hash
	queued  int          // bytes queued, being written or to hash
	pending map[int]int  // piece index: its writes queued, being written or to hash
	failed  map[int]bool
	err     error // the first write that failed
	running bool  // the writer goroutine runs
	hashing bool  // the hashing goroutine runs
	closed  bool
}

type chunkWrite struct {
	p     storage.PieceImpl
	piece int
	b     *[]byte
	off   int64
}

func newWriteBehind(onErr func(error)) *writeBehind {
	w := &writeBehind{onErr: onErr, pending: make(map[int]int), failed: make(map[int]bool)}
	w.changed = sync.NewCond(&w.mu)
	return w
}

// chunkSize is the size of the blocks relay asks peers for (the torrent
// library's); the buffers of queued chunks are pooled at that size.
const chunkSize = 16 << 10

var chunkBufs = sync.Pool{New: func() any {
	b := make([]byte, chunkSize)
	return &b
}}

// write queues b for piece p (number piece) at off, and starts the writer
// if it is not running.
func (w *writeBehind) write(p storage.PieceImpl, piece int, b []byte, off int64) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for !w.closed && w.err == nil && w.queued > 0 && w.queued+len(b) > writeBehindMax {
		w.changed.Wait()
	}
	switch {
	case w.closed:
		return len(b), nil
	case w.err != nil:
		return 0, w.err
	}
	var buf *[]byte
	if len(b) <= chunkSize {
		buf = chunkBufs.Get().(*[]byte)
		*buf = (*buf)[:len(b)]
	} else {
		nb := make([]byte, len(b))
		buf = &nb
	}
	copy(*buf, b)
	w.queue = append(w.queue, chunkWrite{p: p, piece: piece, b: buf, off: off})
	w.queued += len(b)
	w.pending[piece]++
	if !w.running {
		w.running = true
		go w.run()
	}
	return len(b), nil
}

// run writes the queued chunks in order, and ends when none is left.
func (w *writeBehind) run() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.queue) > 0 {
		cw := popChunk(&w.queue)
		w.mu.Unlock()
		n, err := cw.p.WriteAt(*cw.b, cw.off)
		if err == nil && n < len(*cw.b) {
			err = io.ErrShortWrite
		}
		w.mu.Lock()
		if err == nil && w.check != nil {
			w.hashes = append(w.hashes, cw)
			if !w.hashing {
				w.hashing = true
				go w.hash()
			}
			continue
		}
		w.done(cw, false)
		if err != nil {
			w.failed[cw.piece] = true
		}
		if err != nil && w.err == nil {
			w.err = err
			w.mu.Unlock()
			w.onErr(err)
			w.mu.Lock()
		}
	}
	w.queue = nil
	w.running = false
	w.changed.Broadcast()
}

// hash hands the written chunks to the hasher in order, and ends when
// none is left. A chunk the hasher cannot take (it failed to read back
// what came ahead of it) is not a failed write: its piece is read back
// whole when it is checked.
func (w *writeBehind) hash() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.hashes) > 0 {
		cw := popChunk(&w.hashes)
		w.mu.Unlock()
		kept, _ := w.check.hasher.Wrote(cw.piece, cw.off, *cw.b)
		w.mu.Lock()
		w.done(cw, kept)
	}
	w.hashes = nil
	w.hashing = false
	w.changed.Broadcast()
}

// done counts a chunk written (and hashed), and pools its buffer unless
// the hasher kept it; w.mu is held.
func (w *writeBehind) done(cw chunkWrite, kept bool) {
	w.queued -= len(*cw.b)
	if w.pending[cw.piece]--; w.pending[cw.piece] == 0 {
		delete(w.pending, cw.piece)
	}
	if !kept && cap(*cw.b) == chunkSize {
		chunkBufs.Put(cw.b)
	}
	w.changed.Broadcast()
}

// wait waits until the chunks written to a piece have landed, and returns
// the error of one that failed.
func (w *writeBehind) wait(piece int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.pending[piece] > 0 {
		w.changed.Wait()
	}
	if w.failed[piece] {
		return w.err
	}
	return nil
}

// close drops later writes and waits until the queued ones have landed.
func (w *writeBehind) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	w.changed.Broadcast()
	for w.running || w.hashing {
		w.changed.Wait()
	}
}

// behindPiece is a piece of file storage written through a writeBehind.
type behindPiece struct {
	storage.PieceImpl
	w      *writeBehind
	index  int
	length int64
}

func (p behindPiece) WriteAt(b []byte, off int64) (int, error) {
	return p.w.write(p.PieceImpl, p.index, b, off)
}

func (p behindPiece) ReadAt(b []byte, off int64) (int, error) {
	if err := p.w.wait(p.index); err != nil {
		return 0, err
	}
	n, err := p.PieceImpl.ReadAt(b, off)
	if p.w.check != nil {
		p.w.check.libRead.Add(int64(n))
	}
	return n, err
}

// SelfHash answers the torrent library's hash of the piece with the SHA-1
// the hasher computed from the chunks as they were written, reading back
// only what it could not hash then (storage.SelfHashing): the library
// would otherwise read the whole piece back to hash it.
func (p behindPiece) SelfHash() (metainfo.Hash, error) {
	if err := p.w.wait(p.index); err != nil {
		return metainfo.Hash{}, err
	}
	if p.w.check == nil {
		h := sha1.New()
		_, err := p.WriteTo(h)
		return metainfo.Hash(h.Sum(nil)), err
	}
	sum, ok, err := p.w.check.hasher.Piece(p.index)
	if err == nil {
		p.w.check.checked(p.index, ok)
	}
	return metainfo.Hash(sum), err
}

// WriteTo passes on the file storage's efficient read of a whole piece
// (the one the library hashes).
func (p behindPiece) WriteTo(dst io.Writer) (int64, error) {
	if err := p.w.wait(p.index); err != nil {
		return 0, err
	}
	var n int64
	var err error
	if wt, ok := p.PieceImpl.(io.WriterTo); ok {
		n, err = wt.WriteTo(dst)
	} else {
		n, err = io.Copy(dst, io.NewSectionReader(p.PieceImpl, 0, p.length))
	}
	if p.w.check != nil {
		p.w.check.libRead.Add(n)
	}
	return n, err
}

// popChunk takes the first chunk off q, leaving no reference to its buffer
// in q's array.
func popChunk(q *[]chunkWrite) chunkWrite {
	cw := (*q)[0]
	(*q)[0] = chunkWrite{}
	*q = (*q)[1:]
	return cw
}
