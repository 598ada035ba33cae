package transfer

import (
	"bytes"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/relay-sh/relay/record"
)

// A publisher keeps its last few releases (relay publish --keep), and the
// files of successive releases of a program are mostly the same: its
// libraries, data and documentation change seldom. Make lets a new bundle
// share such a file with a bundle the data folder holds already, through a
// hard link, instead of storing a second copy:
//
//   - only with a file that file is known never to be written again: every
//     piece holding its data verified and its SHA-256 checked, as the
//     bundle's state records it, and the file unchanged since (size and
//     time); the torrent library writes only pieces it has not verified;
//   - only with the same path, size and mode (a link shares the mode);
//   - only when its bytes are the same as the source's, compared while
//     the source is read for its hashes: nothing is trusted from the other
//     bundle but what is read from disk now.
//
// A file that differs is copied. The part of it that was the same as the
// other bundle's file is copied from that file inside the kernel
// (copy_file_range, which shares the blocks where the file system can:
// btrfs, XFS), the rest written.
//
// Bundle files are never written in place by relay and never handed to a
// user: placing copies them (or moves a file only a fetch that just
// downloaded it holds), so a link between two bundles never reaches a
// user's copy.

// shareKey is what two bundle files must have in common to be linked.
type shareKey struct {
	path string
	size int64
	mode record.Mode
}

// sharable returns the files of the bundles under root that Make may link
// a new bundle's file to: per path, size and mode, the files' paths on
// disk, one per distinct file (bundles may hold different versions of a
// file of one path and size, or share one). It reads each bundle's
// metainfo, manifest and state; a bundle that cannot be read offers
// nothing.
func sharable(root string) map[shareKey][]string {
	out := make(map[shareKey][]string)
	var seen []os.FileInfo
	ihs, _ := ListBundles(root)
	for _, ih := range ihs {
		dir := filepath.Join(root, ih.String())
		b, err := OpenBundle(root, ih)
		if err != nil {
			continue
		}
		info, _, err := loadMetainfo(dir, ih)
		if err != nil {
			continue
		}
		bs, err := loadState(dir, ih, info)
		if err != nil {
			continue
		}
		byPath := make(map[string]int, len(bs.files))
		for j, f := range bs.files {
			byPath[f.path] = j
		}
		for _, mf := range b.Manifest.Files {
			j, ok := byPath[mf.Path]
			if !ok || mf.Size == 0 || !bs.checked[j] || !bs.fileVerified(j) {
				continue
			}
			p := bs.files[j].osPath
			st, err := os.Lstat(p)
			if err != nil || !st.Mode().IsRegular() || st.Size() != mf.Size || st.Mode().Perm() != fs.FileMode(mf.Mode) ||
				slices.ContainsFunc(seen, func(o os.FileInfo) bool { return os.SameFile(o, st) }) {
				continue
			}
			seen = append(seen, st)
			k := shareKey{mf.Path, mf.Size, mf.Mode}
			out[k] = append(out[k], p)
		}
	}
	return out
}

// fileVerified reports whether every piece holding data of file j is
// verified.
func (bs *bundleState) fileVerified(j int) bool {
	f := bs.files[j]
	for i := f.offset / bs.pieceLen; i*bs.pieceLen < f.offset+f.length; i++ {
		if !bs.complete[i] {
			return false
		}
	}
	return true
}

// sharingWriter writes a new bundle file, out, unless its bytes are those
// of one of like, identical files of other bundles: while every byte
// written so far is one of theirs, it writes nothing; at the first that is
// none of theirs, it copies the part that was the same from one, then
// writes on.
type sharingWriter struct {
	out  *os.File
	like []*os.File // the files whose bytes every byte so far was
	same int64      // bytes written so far, all like's, not yet in out
	buf  []byte
}

func (w *sharingWriter) Write(p []byte) (int, error) {
	if len(w.like) > 0 {
		if len(w.buf) < len(p) {
			w.buf = make([]byte, len(p))
		}
		var still []*os.File
		for _, f := range w.like {
			n, _ := f.ReadAt(w.buf[:len(p)], w.same)
			if n == len(p) && bytes.Equal(w.buf[:n], p) {
				still = append(still, f)
			}
		}
		if len(still) > 0 {
			w.like = still
			w.same += int64(len(p))
			return len(p), nil
		}
		if err := w.diverge(); err != nil {
			return 0, err
		}
	}
	return w.out.Write(p)
}

// diverge stops sharing: it copies the bytes that were the same from one
// of like into out.
func (w *sharingWriter) diverge() error {
	like := w.like
	w.like = nil
	if len(like) == 0 || w.same == 0 {
		return nil
	}
	if _, err := like[0].Seek(0, io.SeekStart); err != nil {
		return err
	}
	// Between two files, io.Copy of a LimitedReader uses copy_file_range.
	n, err := io.Copy(w.out, io.LimitReader(like[0], w.same))
	if err == nil && n < w.same {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// shared returns the file whose bytes the whole file was, size bytes: then
// out holds nothing, and the caller links that file in its place.
func (w *sharingWriter) shared(size int64) *os.File {
	if w.same != size {
		return nil
	}
	for _, f := range w.like {
		if st, err := f.Stat(); err == nil && st.Size() == size {
			return f
		}
	}
	return nil
}

// linkInPlace replaces the file dst by a hard link to like. Where the link
// cannot be made (a file system without them, too many links), it copies
// like into dst instead, which the caller then syncs.
func linkInPlace(like, dst string) (linked bool, err error) {
	tmp := dst + ".link"
	if err := os.Link(like, tmp); err == nil {
		if err := os.Rename(tmp, dst); err != nil {
			os.Remove(tmp)
			return false, err
		}
		return true, nil
	}
	src, err := os.Open(like)
	if err != nil {
		return false, err
	}
	defer src.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return false, err
	}
	defer out.Close()
	if _, err := io.Copy(out, src); err != nil {
		return false, err
	}
	return false, out.Close()
}
