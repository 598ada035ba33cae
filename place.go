package relay

import (
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/relay-sh/relay/internal/atomicfile"
	"github.com/relay-sh/relay/internal/diskio"
	"github.com/relay-sh/relay/internal/faultpoint"
	"github.com/relay-sh/relay/record"
)

// placement says how placeFiles gets each file's bytes from the bundle
// into the folder it places them in. The zero value copies every file and
// hashes it while copying.
type placement struct {
	// hashed holds the paths of the files whose SHA-256 and size this
	// process checked on the bytes the bundle holds now, and that nothing
	// writes since (transfer.Fetched.Hashed: a bundle's verified pieces
	// are never written again): they are placed without being hashed
	// again. Every other file is hashed while it is copied.
	hashed map[string]bool
	// move holds the paths of hashed files to rename out of the bundle
	// instead of copying them, for a caller that neither serves nor reads
	// the bundle after (relay fetch): the files that arrived in this
	// fetch (transfer.Fetched.Arrived), which no seeder of the data
	// folder holds. A file the rename cannot move (another file system)
	// is copied.
	move map[string]bool
	// decrypt, when set, writes each file's plaintext, decrypted from the
	// bundle and checked as it is written (an encrypted release:
	// decrypter); hashed and move are then unused.
	decrypt func(io.Writer, record.File) error
	// early holds the files decrypted while they downloaded, placed
	// instead of decrypting them again (nil for none).
	early *early
}

// start begins the placing of file f, held in the bundle at src, as
// target: the returned temporary file beside target holds f's bytes, and
// placeFiles commits it. A file that was hashed (pl.hashed) is moved
// if pl.move has it, else shared or copied in the kernel
// (diskio.Copy); any other is copied and hashed (copyVerified).
func (pl placement) start(target, src string, f record.File) (*atomicfile.File, error) {
	mode := safeMode(f.Mode)
	if pl.decrypt != nil {
		if p := pl.early.place(target, f, mode); p != nil {
			return p, nil
		}
	}
	if pl.hashed[f.Path] && pl.move[f.Path] {
		return moveOrCopy(target, src, f, mode)
	}
	p, err := atomicfile.CreateMasked(target, mode)
	if err != nil {
		return nil, err
	}
	w := faultpoint.Writer(faultpoint.PlaceWrite, p)
	switch {
	case pl.decrypt != nil:
		err = pl.decrypt(w, f)
	case pl.hashed[f.Path]:
		err = copyFile(w, src, f)
	default:
		err = copyVerified(w, src, f)
	}
	if err != nil {
		p.Abort()
		return nil, err
	}
	return p, nil
}

// moveOrCopy returns a temporary file beside target holding the file at
// src, whose bytes (f's) were checked already: src itself, moved, where
// it can be (atomicfile.Adopt: the same file system, no other name), else
// a copy (copyFile).
func moveOrCopy(target, src string, f record.File, mode fs.FileMode) (*atomicfile.File, error) {
	if p, err := atomicfile.Adopt(target, src, mode); err == nil {
		return p, nil
	}
	p, err := atomicfile.CreateMasked(target, mode)
	if err != nil {
		return nil, err
	}
	if err := copyFile(faultpoint.Writer(faultpoint.PlaceWrite, p), src, f); err != nil {
		p.Abort()
		return nil, err
	}
	return p, nil
}

// copyFile copies the file at src, which must have f's size, to w,
// through the kernel where it can (diskio.Copy).
func copyFile(w io.Writer, src string, f record.File) error {
	r, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("failed to read %s: %w", f.Path, err)
	}
	defer r.Close()
	st, err := r.Stat()
	if err != nil {
		return fmt.Errorf("failed to read %s: %w", f.Path, err)
	}
	if st.Size() != f.Size {
		return fmt.Errorf("%w: %s has %d bytes, the manifest says %d", record.ErrFileMismatch, f.Path, st.Size(), f.Size)
	}
	if _, err := diskio.Copy(w, r, f.Size); err != nil {
		return fmt.Errorf("failed to copy %s: %w", f.Path, err)
	}
	return nil
}
