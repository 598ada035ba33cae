package peerwire

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/anacrolix/torrent/metainfo"
)

// Storage holds a torrent's bytes, addressed by their offset in the
// torrent (its files one after the other, BEP 3). A download writes each
// piece once, after its SHA-1 verified, and never reads it back; serving
// reads pieces the Torrent has. Both may be called from several
// goroutines at once.
type Storage interface {
	io.ReaderAt
	io.WriterAt
}

// Files is a Storage on the files of a torrent's layout under a folder:
// <dir>/<name> for a single-file torrent, <dir>/<name>/<path...> for one
// of several files.
type Files struct {
	files []file
}

// file is one file of a torrent and where it starts in the torrent.
type file struct {
	f      *os.File
	off    int64
	length int64
}

// CreateFiles creates (or opens, keeping what they hold) the files of
// info's layout under dir, and sizes them to their lengths, for a
// download to write into with WriteAt.
func CreateFiles(dir string, info *metainfo.Info) (*Files, error) {
	return openFiles(dir, info, true)
}

// OpenFiles opens the existing files of info's layout under dir for
// reading, to serve them.
func OpenFiles(dir string, info *metainfo.Info) (*Files, error) {
	return openFiles(dir, info, false)
}

func openFiles(dir string, info *metainfo.Info, create bool) (*Files, error) {
	paths, lengths, err := layout(info)
	if err != nil {
		return nil, err
	}
	fs := &Files{}
	var off int64
	for i, p := range paths {
		name := filepath.Join(dir, p)
		var f *os.File
		if create {
			if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
				fs.Close()
				return nil, err
			}
			f, err = os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
			if err == nil {
				var fi os.FileInfo
				if fi, err = f.Stat(); err == nil && fi.Size() != lengths[i] {
					err = f.Truncate(lengths[i])
				}
			}
		} else {
			f, err = os.Open(name)
		}
		if err != nil {
			if f != nil {
				f.Close()
			}
			fs.Close()
			return nil, err
		}
		fs.files = append(fs.files, file{f: f, off: off, length: lengths[i]})
		off += lengths[i]
	}
	return fs, nil
}

// layout returns the relative paths and lengths of info's files, refusing
// paths that would leave the torrent's folder.
func layout(info *metainfo.Info) (paths []string, lengths []int64, err error) {
	if err := safeName(info.Name); err != nil {
		return nil, nil, fmt.Errorf("torrent name: %w", err)
	}
	if len(info.Files) == 0 {
		return []string{info.Name}, []int64{info.Length}, nil
	}
	for _, fi := range info.Files {
		if len(fi.Path) == 0 {
			return nil, nil, errors.New("a file with an empty path")
		}
		for _, c := range fi.Path {
			if err := safeName(c); err != nil {
				return nil, nil, fmt.Errorf("file %q: %w", strings.Join(fi.Path, "/"), err)
			}
		}
		if fi.Length < 0 {
			return nil, nil, fmt.Errorf("file %q: negative length", strings.Join(fi.Path, "/"))
		}
		paths = append(paths, filepath.Join(append([]string{info.Name}, fi.Path...)...))
		lengths = append(lengths, fi.Length)
	}
	return paths, lengths, nil
}

// safeName refuses a path component that is empty, . or .., or holds a
// separator or a NUL.
func safeName(c string) error {
	if c == "" || c == "." || c == ".." || strings.ContainsAny(c, "/\\\x00") {
		return fmt.Errorf("unsafe path component %q", c)
	}
	return nil
}

// ReadAt reads len(p) bytes of the torrent at off, across files.
func (fs *Files) ReadAt(p []byte, off int64) (int, error) {
	return fs.span(p, off, func(f *os.File, b []byte, at int64) (int, error) { return f.ReadAt(b, at) })
}

// WriteAt writes p into the torrent at off, across files.
func (fs *Files) WriteAt(p []byte, off int64) (int, error) {
	return fs.span(p, off, func(f *os.File, b []byte, at int64) (int, error) { return f.WriteAt(b, at) })
}

func (fs *Files) span(p []byte, off int64, op func(*os.File, []byte, int64) (int, error)) (int, error) {
	n := 0
	for _, f := range fs.files {
		if len(p) == 0 {
			break
		}
		if off >= f.off+f.length || f.length == 0 {
			continue
		}
		if off < f.off {
			break
		}
		k := min(int64(len(p)), f.off+f.length-off)
		m, err := op(f.f, p[:k], off-f.off)
		n += m
		if err != nil {
			return n, err
		}
		p, off = p[k:], off+k
	}
	if len(p) > 0 {
		return n, io.ErrUnexpectedEOF
	}
	return n, nil
}

// Sync flushes the files to disk.
func (fs *Files) Sync() error {
	var errs []error
	for _, f := range fs.files {
		errs = append(errs, f.f.Sync())
	}
	return errors.Join(errs...)
}

// Close closes the files.
func (fs *Files) Close() error {
	var errs []error
	for _, f := range fs.files {
		errs = append(errs, f.f.Close())
	}
	fs.files = nil
	return errors.Join(errs...)
}
