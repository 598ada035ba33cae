// Package diskio moves file data the cheapest way the system allows:
// sharing blocks between files (a reflink) where the file system can, and
// starting the write-back of data early, so that a later sync waits for
// little. Every function is a hint or says that it did nothing: callers
// keep a plain way that always works.
package diskio

import (
	"io"
	"os"
)

// CopyChunk is how much Copy moves between two calls of StartWriteback.
const CopyChunk = 64 << 20

// File is what Copy needs of a destination file to do better than a plain
// copy: an *os.File, or a type that embeds one (a temporary file of
// package atomicfile).
type File interface {
	io.Writer
	io.Seeker
	Fd() uintptr
}

// Copy copies the whole of src, which must hold exactly n bytes and be at
// offset 0, to w, which must be empty. When w is a File it first tries to
// share src's blocks (a reflink: FICLONE on Linux, on btrfs, XFS and
// others); else it copies chunk by chunk through (*os.File).ReadFrom,
// which uses copy_file_range on Linux (the data stays in the kernel), and
// starts the write-back of each chunk once it is written. Any other writer
// gets a plain copy. It returns the bytes copied: fewer than n only with
// an error (io.ErrUnexpectedEOF when src ends early). Bytes src holds
// beyond n are not copied; the caller checks src's size.
func Copy(w io.Writer, src *os.File, n int64) (int64, error) {
	dst, _ := w.(File)
	if dst != nil && n > 0 && clone(dst.Fd(), src, n) {
		if _, err := src.Seek(n, io.SeekStart); err != nil {
			return 0, err
		}
		if _, err := dst.Seek(n, io.SeekStart); err != nil {
			return 0, err
		}
		return n, nil
	}
	var done int64
	for done < n {
		k, err := io.CopyN(w, src, min(CopyChunk, n-done))
		if dst != nil {
			StartWriteback(dst.Fd(), done, k)
		}
		done += k
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return done, err
		}
	}
	return done, nil
}
