// Package piecehash computes a torrent's piece SHA-1s and its files'
// SHA-256s from the blocks written to it, as they are written, so that
// neither hash reads the data back from disk.
//
// A Hasher is told of every block written to a torrent's storage (Wrote)
// and hashes it while its bytes are at hand: into the SHA-1 of its piece
// when it follows what that piece has hashed so far, and into the SHA-256
// of its file (for the files asked for, Hash) when it follows what the
// file has hashed so far. A block that arrives ahead of its turn is kept
// (Wrote reports it) up to Options.Buffer bytes in all; beyond that it is
// read back from disk once the hashes reach it. Memory is bounded by that
// buffer and the torrent's layout (a hash state per piece in progress,
// one per piece boundary a file's hash has crossed and that is not yet
// verified, the written ranges of each piece), whatever order or content
// peers send.
//
// The SHA-256 of a file runs ahead of verification: it hashes a piece's
// bytes as they arrive, before the piece's SHA-1 is checked. A piece that
// fails its check rewinds the SHA-256 of every file it holds to the
// piece's start (a copy of the hash state is kept at each piece start the
// hash crosses), so that a file's hash only ever covers the bytes of
// pieces that passed, or that are not checked yet. A caller may use a
// file's hash (File) once every piece of the file passed its check; it
// then holds exactly the file's verified bytes up to its length N, and
// the caller hashes the rest, if any, from disk.
//
// The package knows nothing of any torrent library, and never writes.
package piecehash

import (
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"sort"
	"sync"
)

// Layout is the shape of a torrent's data: its pieces and its files, in
// order.
type Layout struct {
	// PieceLength is the length of every piece but the last.
	PieceLength int64
	// Pieces are the SHA-1 hashes of the pieces.
	Pieces [][20]byte
	// Files are the lengths of the files, in the torrent's order.
	Files []int64
}

// Stats counts the bytes a Hasher hashed and where they came from.
type Stats struct {
	// Streamed is the number of bytes hashed as they were written.
	Streamed int64
	// Buffered is the number of bytes hashed from the copies of blocks
	// that were written ahead of their turn.
	Buffered int64
	// ReadBack is the number of bytes read back from the storage to be
	// hashed (blocks that arrived ahead of their turn beyond the buffer,
	// pieces on disk before the Hasher was made).
	ReadBack int64
	// Failed is the number of pieces whose SHA-1 did not match.
	Failed int
}

// readChunk is the most a Hasher reads back at once.
const readChunk = 256 << 10

// Hasher hashes a torrent's pieces and files as they are written. Its
// methods may be called from any goroutine.
type Hasher struct {
	pieceLen  int64
	hashes    [][20]byte
	total     int64
	fileStart []int64 // where each file starts in the torrent's data
	fileLen   []int64
	read      func(piece int) io.ReaderAt

	mu     sync.Mutex
	pieces []pieceState
	files  []fileState
	// ckpt holds the SHA-256 state of the file a piece starts in, taken
	// when that file's hash reached the piece's start, for the pieces not
	// yet verified: a piece that fails rewinds the file's hash to it.
	ckpt  map[int][]byte
	stats Stats
	buf   []byte
	// blocks holds copies of blocks written ahead of a hash that needs
	// them (their piece's, or a file's), by where they start in the
	// torrent's data, up to maxBuffer bytes in all.
	blocks    map[int64][]byte
	buffered  int64
	maxBuffer int64
	free      func([]byte)
}

type pieceState struct {
	h    hash.Hash // SHA-1 of the first n bytes; nil when n is 0
	n    int64     // bytes hashed, from the piece's start
	done bool      // the piece passed its check and was not written since
	gen  int       // counts the writes to the piece and its resets
	// written are the ranges [a, b) written beyond n and not hashed yet,
	// sorted, apart.
	written []span
}

type span struct{ a, b int64 }

type fileState struct {
	h    hash.Hash // SHA-256 of the file's first n bytes; nil when n is 0
	n    int64
	skip bool // not hashed (until Hash)
}

// Options configure a Hasher.
type Options struct {
	// Read returns a reader of piece i's data, at offsets from the
	// piece's start, for what the Hasher reads back; it must read the
	// storage directly, never wait for the writes the Hasher is told of.
	Read func(piece int) io.ReaderAt
	// Buffer bounds the bytes of the blocks the Hasher keeps when they
	// are written ahead of their turn; what it cannot keep, it reads
	// back. Zero keeps none.
	Buffer int64
	// Free, if not nil, is given each block the Hasher kept (Wrote
	// reported it kept) once it no longer needs it.
	Free func([]byte)
}

// New returns a Hasher for a torrent of layout l.
func New(l Layout, o Options) (*Hasher, error) {
	if l.PieceLength <= 0 {
		return nil, fmt.Errorf("piecehash: piece length %d", l.PieceLength)
	}
	h := &Hasher{
		pieceLen: l.PieceLength, hashes: l.Pieces, read: o.Read, ckpt: make(map[int][]byte),
		blocks: make(map[int64][]byte), maxBuffer: o.Buffer, free: o.Free,
	}
	for _, n := range l.Files {
		if n < 0 {
			return nil, fmt.Errorf("piecehash: file of %d bytes", n)
		}
		h.fileStart = append(h.fileStart, h.total)
		h.fileLen = append(h.fileLen, n)
		h.total += n
	}
	if want := (h.total + l.PieceLength - 1) / l.PieceLength; int64(len(l.Pieces)) != want {
		return nil, fmt.Errorf("piecehash: %d piece hashes for %d bytes in pieces of %d", len(l.Pieces), h.total, l.PieceLength)
	}
	h.pieces = make([]pieceState, len(l.Pieces))
	h.files = make([]fileState, len(l.Files))
	for j := range h.files {
		h.files[j].skip = true
	}
	return h, nil
}

// pieceBounds returns where piece i starts and its length.
func (h *Hasher) pieceBounds(i int) (start, length int64) {
	start = int64(i) * h.pieceLen
	return start, min(h.pieceLen, h.total-start)
}

// fileAt returns the index of the file holding torrent offset off, the
// first of any empty files before it.
func (h *Hasher) fileAt(off int64) int {
	return sort.Search(len(h.fileStart), func(j int) bool { return h.fileStart[j]+h.fileLen[j] > off })
}

// ErrRange reports a write outside the torrent's data.
var ErrRange = errors.New("piecehash: write outside the piece")

// Wrote tells the Hasher that b was written at offset off of piece i, and
// landed. Bytes already hashed that are written again make the piece
// start over (and the hash of the files it holds rewind to its start).
// When it reports kept, the Hasher holds on to b, which the caller must
// then leave unchanged (Options.Free gets it back).
func (h *Hasher) Wrote(i int, off int64, b []byte) (kept bool, err error) {
	if i < 0 || i >= len(h.pieces) {
		return false, ErrRange
	}
	_, length := h.pieceBounds(i)
	if off < 0 || off+int64(len(b)) > length {
		return false, ErrRange
	}
	if len(b) == 0 {
		return false, nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	p := &h.pieces[i]
	p.gen++
	end := off + int64(len(b))
	if p.done || off < p.n || overlaps(p.written, off, end) {
		h.reset(i)
	}
	start, _ := h.pieceBounds(i)
	if off > p.n {
		p.written = insert(p.written, span{off, end})
		return h.keep(start+off, b), nil
	}
	h.advance(i, b)
	h.stats.Streamed += int64(len(b))
	if h.needed(start+off, start+end) {
		kept = h.keep(start+off, b)
	}
	if err := h.catchUp(i); err != nil {
		h.reset(i)
		return kept, err
	}
	return kept, nil
}

// Piece finishes the SHA-1 of piece i, reading back what was not hashed
// as it was written, and reports whether it matches the piece's hash.
// A piece that does not match, or cannot be read, starts over, and the
// hashes of its files rewind to its start. A piece checked again (a
// recheck) is read back whole.
func (h *Hasher) Piece(i int) (sum [20]byte, ok bool, err error) {
	if i < 0 || i >= len(h.pieces) {
		return sum, false, ErrRange
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	p := &h.pieces[i]
	_, length := h.pieceBounds(i)
	if p.done || p.n == 0 && len(p.written) == 0 {
		// Checked again, or on disk before (a seeder checking what it
		// holds): hashed aside, without the lock, so that several
		// pieces are hashed at once, and nothing is disturbed unless it
		// no longer matches.
		gen := p.gen
		h.mu.Unlock()
		sum, err = h.hashAside(i, length)
		h.mu.Lock()
		if p.gen == gen {
			h.stats.ReadBack += length
			if err != nil || sum != h.hashes[i] {
				if err == nil {
					h.stats.Failed++
				}
				h.reset(i)
				return sum, false, err
			}
			if !p.done {
				*p = pieceState{n: length, done: true, gen: p.gen}
				delete(h.ckpt, i)
				if err := h.catchUpFiles(i); err != nil {
					return sum, true, nil // the files' hashes are read back later
				}
			}
			return sum, true, nil
		}
		// Written meanwhile: hashed as any piece is, below.
	}
	p.written = append(p.written[:0], span{p.n, length})
	if err := h.catchUp(i); err != nil {
		h.reset(i)
		return sum, false, err
	}
	if p.n < length {
		h.reset(i)
		return sum, false, fmt.Errorf("piecehash: piece %d: read %d of %d bytes", i, p.n, length)
	}
	if p.h == nil {
		p.h = sha1.New()
	}
	p.h.Sum(sum[:0])
	if sum != h.hashes[i] {
		h.stats.Failed++
		h.reset(i)
		return sum, false, nil
	}
	p.h, p.written, p.done = nil, nil, true // n stays the piece's length
	delete(h.ckpt, i)
	return sum, true, nil
}

// File returns a copy of the SHA-256 state of file j and the number of
// the file's first bytes it covers. Once every piece of the file passed
// its check (Piece), those bytes are the file's verified bytes; the
// caller hashes the rest from disk.
func (h *Hasher) File(j int) (hash.Hash, int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f := &h.files[j]
	if f.h == nil {
		return sha256.New(), 0
	}
	c, err := f.h.(hash.Cloner).Clone()
	if err != nil {
		return sha256.New(), 0
	}
	return c.(hash.Hash), f.n
}

// Hash starts the SHA-256 of file j, which no file has until asked: a
// seeder that checks pieces needs none, and a fetch asks for the files it
// checks by their SHA-256 (not an encrypted file it decrypts). What of the
// file was hashed by its pieces before is read back now.
func (h *Hasher) Hash(j int) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.files[j].skip {
		return nil
	}
	h.files[j].skip = false
	return h.catchUpFile(j)
}

// Stats returns what the Hasher has hashed so far.
func (h *Hasher) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stats
}

// advance hashes b, the bytes of piece i from where its hash stands, into
// the piece's SHA-1 and into the SHA-256 of the files whose hash stands
// where b lies.
func (h *Hasher) advance(i int, b []byte) {
	p := &h.pieces[i]
	if p.h == nil {
		p.h = sha1.New()
	}
	p.h.Write(b)
	start, _ := h.pieceBounds(i)
	off := start + p.n
	p.n += int64(len(b))
	end := off + int64(len(b))
	for j := h.fileAt(off); j < len(h.files) && h.fileStart[j] < end; j++ {
		a := max(off, h.fileStart[j])
		if h.fileLen[j] > 0 && !h.files[j].skip && h.fileStart[j]+h.files[j].n == a {
			z := min(end, h.fileStart[j]+h.fileLen[j])
			h.feedFile(j, b[a-off:z-off])
		}
	}
}

// feedFile hashes b into the SHA-256 of file j, where its hash stands; b
// lies within one piece. At a piece start inside the file, it first keeps
// a copy of the hash state, for a rewind should that piece fail.
func (h *Hasher) feedFile(j int, b []byte) {
	f := &h.files[j]
	at := h.fileStart[j] + f.n
	if q := int(at / h.pieceLen); f.n > 0 && at%h.pieceLen == 0 && !h.pieces[q].done {
		st, err := f.h.(interface{ MarshalBinary() ([]byte, error) }).MarshalBinary()
		if err == nil {
			h.ckpt[q] = st
		}
	}
	if f.h == nil {
		f.h = sha256.New()
	}
	f.h.Write(b)
	f.n += int64(len(b))
}

// catchUp reads back and hashes what is written of piece i past where its
// hash stands, and then moves on the hashes of its files that stand at
// bytes already hashed.
func (h *Hasher) catchUp(i int) error {
	p := &h.pieces[i]
	for len(p.written) > 0 && p.written[0].a == p.n {
		s := p.written[0]
		for p.n < s.b {
			start, _ := h.pieceBounds(i)
			at := start + p.n
			b, err := h.bytesAt(i, p.n, min(s.b-p.n, readChunk))
			if err != nil {
				return err
			}
			h.advance(i, b)
			h.release(at, at+int64(len(b)))
		}
		p.written = p.written[1:]
	}
	if len(p.written) == 0 {
		p.written = nil
	}
	return h.catchUpFiles(i)
}

// catchUpFiles moves on, from disk, the hash of each file of piece i that
// stands at bytes its pieces have hashed already: a piece hashed before
// the one ahead of it leaves the hash of the file behind until then.
func (h *Hasher) catchUpFiles(i int) error {
	start, length := h.pieceBounds(i)
	for j := h.fileAt(start); j < len(h.files) && h.fileStart[j] < start+length; j++ {
		if err := h.catchUpFile(j); err != nil {
			return err
		}
	}
	return nil
}

// catchUpFile moves on, from what is kept or from disk, the hash of file
// j through the bytes its pieces have hashed.
func (h *Hasher) catchUpFile(j int) error {
	fs, fl := h.fileStart[j], h.fileLen[j]
	f := &h.files[j]
	for !f.skip && f.n < fl {
		at := fs + f.n
		q := int(at / h.pieceLen)
		qs, _ := h.pieceBounds(q)
		avail := qs + h.pieces[q].n
		if at >= avail {
			break
		}
		b, err := h.bytesAt(q, at-qs, min(avail-at, fs+fl-at, readChunk))
		if err != nil {
			return err
		}
		h.feedFile(j, b)
		h.release(at, at+int64(len(b)))
	}
	return nil
}

// blockAt returns the start and bytes of the block kept that holds
// torrent offset at, if any. Blocks are written at multiples of 16 KiB
// from their piece's start (the block size of the peer protocol); others
// are not found, and read back.
func (h *Hasher) blockAt(at int64) (int64, []byte, bool) {
	if len(h.blocks) == 0 {
		return 0, nil, false
	}
	ps := at / h.pieceLen * h.pieceLen
	for _, k := range [2]int64{at, ps + (at-ps)/blockSize*blockSize} {
		if b, ok := h.blocks[k]; ok && k <= at && at < k+int64(len(b)) {
			return k, b, true
		}
	}
	return 0, nil, false
}

// blockSize is the size of the blocks peers send.
const blockSize = 16 << 10

// bytesAt returns up to n bytes of piece i at off: from a block kept, or
// read back from the storage.
func (h *Hasher) bytesAt(i int, off, n int64) ([]byte, error) {
	start, _ := h.pieceBounds(i)
	if k, b, ok := h.blockAt(start + off); ok {
		b = b[start+off-k:]
		b = b[:min(int64(len(b)), n)]
		h.stats.Buffered += int64(len(b))
		return b, nil
	}
	if n > blockSize {
		// Stop at the next block kept.
		for x := (off/blockSize + 1) * blockSize; x < off+n; x += blockSize {
			if _, ok := h.blocks[start+x]; ok {
				n = x - off
				break
			}
		}
	}
	return h.readBack(i, off, n)
}

// needed reports whether the bytes [a, z) of the torrent are still to be
// hashed, by their piece or by a file.
func (h *Hasher) needed(a, z int64) bool {
	i := int(a / h.pieceLen)
	qs, _ := h.pieceBounds(i)
	if p := &h.pieces[i]; !p.done && qs+p.n < z {
		return true
	}
	for j := h.fileAt(a); j < len(h.files) && h.fileStart[j] < z; j++ {
		if h.fileLen[j] > 0 && !h.files[j].skip && h.fileStart[j]+h.files[j].n < min(z, h.fileStart[j]+h.fileLen[j]) {
			return true
		}
	}
	return false
}

// keep keeps the block b written at torrent offset at, if the buffer has
// room, and reports whether it did.
func (h *Hasher) keep(at int64, b []byte) bool {
	h.drop(at)
	if h.buffered+int64(len(b)) > h.maxBuffer {
		return false
	}
	h.blocks[at] = b
	h.buffered += int64(len(b))
	return true
}

// drop drops the block kept at at, if any.
func (h *Hasher) drop(at int64) {
	b, ok := h.blocks[at]
	if !ok {
		return
	}
	delete(h.blocks, at)
	h.buffered -= int64(len(b))
	if h.free != nil {
		h.free(b)
	}
}

// release drops the blocks kept within [a, z) (and the one holding a)
// that no hash needs any more.
func (h *Hasher) release(a, z int64) {
	if len(h.blocks) == 0 {
		return
	}
	if k, _, ok := h.blockAt(a); ok {
		a = k
	}
	for k := a; k < z; {
		b, ok := h.blocks[k]
		if !ok {
			k = (k/blockSize + 1) * blockSize
			continue
		}
		end := k + int64(len(b))
		if !h.needed(k, end) {
			h.drop(k)
		}
		k = end
	}
}

// asideBufs are the buffers of hashAside.
var asideBufs = sync.Pool{New: func() any {
	b := make([]byte, readChunk)
	return &b
}}

// hashAside returns the SHA-1 of piece i, of length bytes, read from the
// storage; h.mu is not held.
func (h *Hasher) hashAside(i int, length int64) (sum [20]byte, err error) {
	bp := asideBufs.Get().(*[]byte)
	defer asideBufs.Put(bp)
	sh := sha1.New()
	r := h.read(i)
	for off := int64(0); off < length; {
		b := (*bp)[:min(length-off, readChunk)]
		n, err := r.ReadAt(b, off)
		if n < len(b) {
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return sum, fmt.Errorf("piecehash: failed to read back piece %d: %w", i, err)
		}
		sh.Write(b)
		off += int64(n)
	}
	sh.Sum(sum[:0])
	return sum, nil
}

// readBack reads n bytes of piece i at off into the Hasher's buffer.
func (h *Hasher) readBack(i int, off, n int64) ([]byte, error) {
	if h.buf == nil {
		h.buf = make([]byte, readChunk)
	}
	b := h.buf[:n]
	k, err := h.read(i).ReadAt(b, off)
	if int64(k) == n {
		err = nil
	} else if err == nil {
		err = io.ErrUnexpectedEOF
	}
	h.stats.ReadBack += int64(k)
	if err != nil {
		return nil, fmt.Errorf("piecehash: failed to read back piece %d: %w", i, err)
	}
	return b, nil
}

// reset makes piece i start over, and rewinds the hash of each file it
// holds to the piece's start: to the copy kept there, or to the file's
// start if there is none.
func (h *Hasher) reset(i int) {
	h.pieces[i] = pieceState{gen: h.pieces[i].gen + 1}
	start, length := h.pieceBounds(i)
	for k := range h.blocks {
		if k >= start && k < start+length {
			h.drop(k)
		}
	}
	for j := h.fileAt(start); j < len(h.files) && h.fileStart[j] < start+length; j++ {
		fs := h.fileStart[j]
		f := &h.files[j]
		if fs+f.n <= start || f.n == 0 || f.skip {
			continue
		}
		st, ok := h.ckpt[i]
		if fs >= start || !ok {
			*f = fileState{}
			continue
		}
		nh := sha256.New()
		if err := nh.(interface{ UnmarshalBinary([]byte) error }).UnmarshalBinary(st); err != nil {
			*f = fileState{}
			continue
		}
		*f = fileState{h: nh, n: start - fs}
	}
}

func overlaps(ss []span, a, b int64) bool {
	for _, s := range ss {
		if s.a < b && a < s.b {
			return true
		}
	}
	return false
}

// insert adds s to the sorted spans ss, merging it with those it touches.
func insert(ss []span, s span) []span {
	k := sort.Search(len(ss), func(x int) bool { return ss[x].a > s.a })
	ss = append(ss, span{})
	copy(ss[k+1:], ss[k:])
	ss[k] = s
	out := ss[:0]
	for _, x := range ss {
		if len(out) > 0 && out[len(out)-1].b >= x.a {
			out[len(out)-1].b = max(out[len(out)-1].b, x.b)
			continue
		}
		out = append(out, x)
	}
	return out
}
