package piecehash

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"testing"
)

// disk is a torrent's data in memory, read back through the pieces.
type disk struct {
	data     []byte
	pieceLen int64
	reads    int64
}

func (d *disk) piece(i int) io.ReaderAt {
	return readerFunc(func(b []byte, off int64) (int, error) {
		start := int64(i)*d.pieceLen + off
		n := copy(b, d.data[start:min(int64(len(d.data)), int64(i+1)*d.pieceLen)])
		d.reads += int64(n)
		if n < len(b) {
			return n, io.EOF
		}
		return n, nil
	})
}

type readerFunc func([]byte, int64) (int, error)

func (f readerFunc) ReadAt(b []byte, off int64) (int, error) { return f(b, off) }

type torrent struct {
	want   []byte // the genuine data
	layout Layout
	d      *disk
	h      *Hasher
}

func newTorrent(t *testing.T, rng *rand.Rand, pieceLen int64, files []int64) *torrent {
	return newTorrentBuffer(t, rng, pieceLen, files, 0)
}

func newTorrentBuffer(t *testing.T, rng *rand.Rand, pieceLen int64, files []int64, buffer int64) *torrent {
	t.Helper()
	var total int64
	for _, n := range files {
		total += n
	}
	want := make([]byte, total)
	for i := range want {
		want[i] = byte(rng.Uint32())
	}
	l := Layout{PieceLength: pieceLen, Files: files}
	for off := int64(0); off < total; off += pieceLen {
		l.Pieces = append(l.Pieces, sha1.Sum(want[off:min(total, off+pieceLen)]))
	}
	d := &disk{data: make([]byte, total), pieceLen: pieceLen}
	h, err := New(l, Options{Read: d.piece, Buffer: buffer})
	if err != nil {
		t.Fatal(err)
	}
	for j := range files {
		if err := h.Hash(j); err != nil {
			t.Fatal(err)
		}
	}
	return &torrent{want: want, layout: l, d: d, h: h}
}

// write writes b at offset off of piece i to disk, then tells the Hasher.
func (tr *torrent) write(t *testing.T, i int, off int64, b []byte) {
	t.Helper()
	copy(tr.d.data[int64(i)*tr.layout.PieceLength+off:], b)
	// The Hasher may keep b: give it a copy the test does not change.
	if _, err := tr.h.Wrote(i, off, bytes.Clone(b)); err != nil {
		t.Fatal(err)
	}
}

type block struct {
	piece int
	off   int64
	n     int64
}

func (tr *torrent) blocks(size int64) []block {
	var out []block
	total := int64(len(tr.want))
	for i := range tr.layout.Pieces {
		start := int64(i) * tr.layout.PieceLength
		plen := min(tr.layout.PieceLength, total-start)
		for off := int64(0); off < plen; off += size {
			out = append(out, block{i, off, min(size, plen-off)})
		}
	}
	return out
}

func (tr *torrent) genuine(b block) []byte {
	start := int64(b.piece)*tr.layout.PieceLength + b.off
	return tr.want[start : start+b.n]
}

// writeAll writes the genuine bytes of blocks in their order, and checks
// each piece once its last block is written.
func (tr *torrent) writeAll(t *testing.T, blocks []block) {
	t.Helper()
	left := make(map[int]int64)
	for _, b := range blocks {
		left[b.piece] += b.n
	}
	for _, b := range blocks {
		tr.write(t, b.piece, b.off, tr.genuine(b))
		if left[b.piece] -= b.n; left[b.piece] == 0 {
			if _, ok, err := tr.h.Piece(b.piece); !ok || err != nil {
				t.Fatalf("piece %d: ok %v, err %v", b.piece, ok, err)
			}
		}
	}
}

// checkFiles checks each file's hash, finished from disk as a fetch does.
func (tr *torrent) checkFiles(t *testing.T) {
	t.Helper()
	var off int64
	for j, n := range tr.layout.Files {
		h, k := tr.h.File(j)
		if k > n {
			t.Fatalf("file %d: hash covers %d of %d bytes", j, k, n)
		}
		h.Write(tr.d.data[off+k : off+n])
		if got, want := h.Sum(nil), sha256.Sum256(tr.want[off:off+n]); !bytes.Equal(got, want[:]) {
			t.Fatalf("file %d (%d bytes, %d hashed as written): wrong sha-256", j, n, k)
		}
		off += n
	}
}

// verifyAll checks every piece, and that each matches.
func (tr *torrent) verifyAll(t *testing.T) {
	t.Helper()
	for i := range tr.layout.Pieces {
		if _, ok, err := tr.h.Piece(i); !ok || err != nil {
			t.Fatalf("piece %d: ok %v, err %v", i, ok, err)
		}
	}
}

// TestInOrder: blocks written in order are hashed without a byte read
// back, pieces and files alike.
func TestInOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tr := newTorrent(t, rng, 64<<10, []int64{100_000, 0, 3, 200_000, 65536, 7})
	for _, b := range tr.blocks(16 << 10) {
		tr.write(t, b.piece, b.off, tr.genuine(b))
	}
	tr.verifyAll(t)
	for j, n := range tr.layout.Files {
		if _, k := tr.h.File(j); k != n {
			t.Errorf("file %d: %d of %d bytes hashed", j, k, n)
		}
	}
	tr.checkFiles(t)
	if st := tr.h.Stats(); tr.d.reads != 0 || st.ReadBack != 0 || st.Streamed != int64(len(tr.want)) {
		t.Errorf("read back %d bytes (stats %+v), want none", tr.d.reads, st)
	}
}

// TestAnyOrder: blocks in random orders and sizes, pieces checked as each
// completes, in any order; the hashes are right, and what is read back is
// what came ahead of its turn.
func TestAnyOrder(t *testing.T) {
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 7))
		var files []int64
		for range 1 + rng.IntN(6) {
			files = append(files, int64(rng.IntN(3)*rng.IntN(90_000)))
		}
		files = append(files, 1+int64(rng.IntN(50_000)))
		tr := newTorrentBuffer(t, rng, int64(16<<10)<<rng.IntN(3), files, int64(rng.IntN(3))*64<<10)
		blocks := tr.blocks(int64(4<<10) << rng.IntN(3))
		// Mostly in order, with some blocks swapped further apart.
		for range len(blocks) / 4 {
			a := rng.IntN(len(blocks))
			b := min(len(blocks)-1, a+rng.IntN(12))
			blocks[a], blocks[b] = blocks[b], blocks[a]
		}
		tr.writeAll(t, blocks)
		tr.checkFiles(t)
		if st := tr.h.Stats(); st.Streamed+st.Buffered+st.ReadBack < int64(len(tr.want)) {
			t.Fatalf("seed %d: %+v for %d bytes", seed, st, len(tr.want))
		}
		if tr.h.buffered > tr.h.maxBuffer {
			t.Fatalf("seed %d: %d bytes kept, over the %d allowed", seed, tr.h.buffered, tr.h.maxBuffer)
		}
	}
}

// TestCorruptPiece: a piece whose blocks came in wrong fails, its files'
// hashes rewind, and the genuine blocks sent again make it and the files
// right, whether the bad piece came before the pieces after it or not.
func TestCorruptPiece(t *testing.T) {
	for seed := range uint64(30) {
		rng := rand.New(rand.NewPCG(seed, 9))
		tr := newTorrentBuffer(t, rng, 16<<10, []int64{40_000, 70_000, 5, 30_000}, int64(rng.IntN(2))*32<<10)
		blocks := tr.blocks(4 << 10)
		bad := rng.IntN(len(tr.layout.Pieces))
		badBlock := -1
		for k, b := range blocks {
			if b.piece == bad && (badBlock < 0 || rng.IntN(2) == 0) {
				badBlock = k
			}
		}
		var redo []block
		for k, b := range blocks {
			data := tr.genuine(b)
			if k == badBlock {
				data = bytes.Clone(data)
				data[rng.IntN(len(data))] ^= 0x40
			}
			tr.write(t, b.piece, b.off, data)
			if b.piece == bad {
				redo = append(redo, b)
			}
			if b.off+b.n == min(tr.layout.PieceLength, int64(len(tr.want))-int64(b.piece)*tr.layout.PieceLength) {
				_, ok, err := tr.h.Piece(b.piece)
				if err != nil || ok != (b.piece != bad) {
					t.Fatalf("seed %d: piece %d (bad %d): ok %v, err %v", seed, b.piece, bad, ok, err)
				}
			}
		}
		// The bad piece's file hashes hold nothing of it.
		for _, b := range redo {
			tr.write(t, b.piece, b.off, tr.genuine(b))
		}
		if _, ok, err := tr.h.Piece(bad); !ok || err != nil {
			t.Fatalf("seed %d: piece %d again: ok %v, err %v", seed, bad, ok, err)
		}
		tr.checkFiles(t)
		if st := tr.h.Stats(); st.Failed != 1 {
			t.Fatalf("seed %d: %d pieces failed, want 1", seed, st.Failed)
		}
	}
}

// TestOverwrite: a block written again over hashed bytes (a peer sending
// a block twice, a hostile one sending other bytes) makes the piece start
// over from disk; a piece checked again (a recheck) is read back whole.
func TestOverwrite(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	tr := newTorrent(t, rng, 32<<10, []int64{50_000, 50_000})
	blocks := tr.blocks(8 << 10)
	for _, b := range blocks {
		tr.write(t, b.piece, b.off, tr.genuine(b))
	}
	// Bytes other than the genuine ones over the first block of piece 1,
	// then the genuine ones again.
	junk := bytes.Repeat([]byte{1}, 8<<10)
	tr.write(t, 1, 0, junk)
	if _, ok, _ := tr.h.Piece(1); ok {
		t.Fatal("piece 1 passed with junk in it")
	}
	tr.write(t, 1, 0, tr.genuine(block{1, 0, 8 << 10}))
	tr.verifyAll(t)
	tr.checkFiles(t)
	// A recheck reads the piece again.
	before := tr.d.reads
	tr.verifyAll(t)
	if got := tr.d.reads - before; got != int64(len(tr.want)) {
		t.Errorf("recheck read %d bytes, want %d", got, len(tr.want))
	}
}

// TestBadWrites: writes outside a piece are refused.
func TestBadWrites(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	tr := newTorrent(t, rng, 16<<10, []int64{20_000})
	for _, c := range []struct {
		i   int
		off int64
		n   int
	}{{-1, 0, 1}, {2, 0, 1}, {0, -1, 1}, {0, 16<<10 - 1, 2}, {1, 20_000 - 16<<10, 1}} {
		if _, err := tr.h.Wrote(c.i, c.off, make([]byte, c.n)); err == nil {
			t.Errorf("write of %d bytes at %d of piece %d accepted", c.n, c.off, c.i)
		}
	}
	if _, err := New(Layout{PieceLength: 16 << 10, Files: []int64{20_000}}, Options{}); err == nil {
		t.Error("a layout without its piece hashes accepted")
	}
}

// TestBuffered: blocks of 16 KiB arriving in any order within a window
// smaller than the buffer are hashed without a byte read back, and the
// buffer is empty at the end.
func TestBuffered(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	tr := newTorrentBuffer(t, rng, 64<<10, []int64{300_000, 5, 400_000}, 1<<20)
	blocks := tr.blocks(16 << 10)
	// Shuffle within windows of 32 blocks (512 KiB).
	for a := 0; a < len(blocks); a += 32 {
		w := blocks[a:min(len(blocks), a+32)]
		rng.Shuffle(len(w), func(x, y int) { w[x], w[y] = w[y], w[x] })
	}
	tr.writeAll(t, blocks)
	for j, n := range tr.layout.Files {
		if _, k := tr.h.File(j); k != n {
			t.Errorf("file %d: %d of %d bytes hashed", j, k, n)
		}
	}
	tr.checkFiles(t)
	if st := tr.h.Stats(); tr.d.reads != 0 || st.ReadBack != 0 {
		t.Errorf("read back %d bytes (stats %+v), want none", tr.d.reads, st)
	}
	if tr.h.buffered != 0 || len(tr.h.blocks) != 0 {
		t.Errorf("%d bytes in %d blocks kept at the end", tr.h.buffered, len(tr.h.blocks))
	}
}

// TestHashSome: a file whose hash is not asked for holds nothing, the
// others and the pieces are hashed as before, nothing is kept for it, and
// a file asked for late is caught up from disk.
func TestHashSome(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 6))
	tr := newTorrentBuffer(t, rng, 16<<10, []int64{30_000, 50_000, 20_000}, 1<<20)
	h, err := New(tr.layout, Options{Read: tr.d.piece, Buffer: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	tr.h = h
	h.Hash(0)
	blocks := tr.blocks(4 << 10)
	for a := 0; a < len(blocks); a += 8 {
		w := blocks[a:min(len(blocks), a+8)]
		rng.Shuffle(len(w), func(x, y int) { w[x], w[y] = w[y], w[x] })
	}
	tr.writeAll(t, blocks)
	before := tr.d.reads
	if err := h.Hash(2); err != nil {
		t.Fatal(err)
	}
	if got := tr.d.reads - before; got != tr.layout.Files[2] {
		t.Errorf("a file asked for once written: read back %d bytes, want its %d", got, tr.layout.Files[2])
	}
	if _, k := tr.h.File(1); k != 0 {
		t.Errorf("a file not asked for: %d bytes hashed", k)
	}
	for _, j := range []int{0, 2} {
		if _, k := tr.h.File(j); k != tr.layout.Files[j] {
			t.Errorf("file %d: %d of %d bytes hashed", j, k, tr.layout.Files[j])
		}
	}
	if tr.h.buffered != 0 {
		t.Errorf("%d bytes kept at the end", tr.h.buffered)
	}
}
