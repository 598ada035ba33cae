package transfer

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
)

// wireFiles is a bundle's files as the wire engine's storage
// (peerwire.Storage): the torrent's bytes, file after file. A file is
// opened when it is first read, and created (with its folders) when it is
// first written: a bundle of which only some files are here (a fetch of
// one platform) is served as it is, and a read of a file that is not
// there fails. Its methods may be called from several goroutines at once.
type wireFiles struct {
	files []span

	mu     sync.Mutex
	rd, wr []*os.File // by file, once opened
	closed bool
}

func newWireFiles(files []span) *wireFiles {
	return &wireFiles{files: files, rd: make([]*os.File, len(files)), wr: make([]*os.File, len(files))}
}

// ReadAt reads len(p) bytes of the torrent at off, across files.
func (s *wireFiles) ReadAt(p []byte, off int64) (int, error) { return s.span(p, off, false) }

// WriteAt writes p into the torrent at off, across files.
func (s *wireFiles) WriteAt(p []byte, off int64) (int, error) { return s.span(p, off, true) }

func (s *wireFiles) span(p []byte, off int64, write bool) (int, error) {
	n := 0
	j := sort.Search(len(s.files), func(j int) bool { return s.files[j].offset+s.files[j].length > off })
	for ; len(p) > 0 && j < len(s.files); j++ {
		f := s.files[j]
		if f.length == 0 {
			continue
		}
		at := off - f.offset
		k := min(int64(len(p)), f.length-at)
		h, err := s.open(j, write)
		if err != nil {
			return n, err
		}
		var m int
		if write {
			m, err = h.WriteAt(p[:k], at)
		} else {
			m, err = h.ReadAt(p[:k], at)
		}
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

// open returns file j opened for reading, or for writing.
func (s *wireFiles) open(j int, write bool) (*os.File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, os.ErrClosed
	}
	hs := s.rd
	if write {
		hs = s.wr
	}
	if hs[j] != nil {
		return hs[j], nil
	}
	p := s.files[j].osPath
	var f *os.File
	var err error
	if write {
		if err = os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		f, err = os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o644)
	} else {
		f, err = os.Open(p)
	}
	if err != nil {
		return nil, err
	}
	hs[j] = f
	return f, nil
}

// Close closes the files; reads and writes after it fail.
func (s *wireFiles) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	var errs []error
	for _, hs := range [][]*os.File{s.rd, s.wr} {
		for j, f := range hs {
			if f != nil {
				errs = append(errs, f.Close())
				hs[j] = nil
			}
		}
	}
	return errors.Join(errs...)
}
