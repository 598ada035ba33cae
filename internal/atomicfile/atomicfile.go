// Package atomicfile writes files so that their final name only ever
// holds a whole file: the old one or the new one, never a part. A file is
// written under a temporary name in the same folder, synced, and renamed
// over the target; the folder is synced after.
//
// It exists because the well-known Go package for this (renameio) does not
// build its API on Windows, where relay's update package must work.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// ErrLinked is Adopt's refusal of a file that has other names.
var ErrLinked = errors.New("the file has other names (hard links)")

// File is a file being written in place of another. Write to it, then
// Commit to rename it over its target, or Abort to remove it; Abort after
// Commit does nothing, so `defer f.Abort()` is always safe.
type File struct {
	*os.File
	target string
	from   string // the file Adopt moved here, where Abort puts it back
	done   bool
}

// TempPrefix begins the name of every temporary file this package makes,
// so that callers can recognise and remove leftovers of a crash.
const TempPrefix = ".relay-tmp-"

// Create starts writing a new file that will replace target, with mode
// perm, in target's folder.
func Create(target string, perm fs.FileMode) (*File, error) {
	f, err := create(target)
	if err != nil {
		return nil, err
	}
	if runtime.GOOS != "windows" {
		if err := f.Chmod(perm); err != nil {
			f.Close()
			os.Remove(f.Name())
			return nil, err
		}
	}
	return &File{File: f, target: target}, nil
}

// CreateMasked is Create for a file whose mode comes from elsewhere (a
// release's manifest): perm is reduced by the process's umask, as for any
// new file (the temporary file is made with perm, not changed to it
// after), so that a user's umask holds for what relay writes for them.
func CreateMasked(target string, perm fs.FileMode) (*File, error) {
	dir, base := filepath.Split(target)
	if dir == "" {
		dir = "."
	}
	for range 100 {
		name := filepath.Join(dir, TempPrefix+base+"-"+strconv.FormatUint(uint64(rand.Uint32()), 10))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, perm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return &File{File: f, target: target}, nil
	}
	return nil, fmt.Errorf("failed to make a temporary file for %s: too many exist", target)
}

// Commit syncs and closes the file and renames it over its target.
func (f *File) Commit() error {
	if f.done {
		return errors.New("atomicfile: commit after commit or abort")
	}
	f.done = true
	err := errors.Join(f.Sync(), f.Close())
	if err == nil {
		err = os.Rename(f.Name(), f.target)
	}
	if err != nil {
		f.discard()
		return fmt.Errorf("failed to write %s: %w", f.target, err)
	}
	SyncDir(filepath.Dir(f.target))
	return nil
}

// create makes an empty temporary file beside target.
func create(target string) (*os.File, error) {
	dir, base := filepath.Split(target)
	if dir == "" {
		dir = "."
	}
	return os.CreateTemp(dir, TempPrefix+base+"-*")
}

// Abort closes and removes the file (puts an adopted one back where it
// came from), leaving the target as it was.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.Close()
	f.discard()
}

// discard removes the temporary file, or moves an adopted one back.
func (f *File) discard() {
	if f.from != "" {
		os.Rename(f.Name(), f.from)
		return
	}
	os.Remove(f.Name())
}

// Adopt starts a File from a whole file instead of writing one: src is
// renamed to a temporary name beside target and given mode perm reduced by
// the process's umask (as CreateMasked gives it), its bytes neither read
// nor copied. Commit then syncs it and renames it over target, as for a
// File written by Create; Abort (or a failed Commit) moves it back to src.
// Where src and target's folder are on two file systems it fails with an
// *os.LinkError (syscall.EXDEV on Unix) and src stays where it was. A src
// with other names (hard links) is refused with ErrLinked: the file
// adopted would still be theirs, and an edit of it would reach them.
func Adopt(target, src string, perm fs.FileMode) (*File, error) {
	if fi, err := os.Lstat(src); err != nil {
		return nil, err
	} else if linked(fi) {
		return nil, fmt.Errorf("adopt %s: %w", src, ErrLinked)
	}
	tmp, err := CreateMasked(target, perm)
	if err != nil {
		return nil, err
	}
	name := tmp.Name()
	st, err := tmp.Stat()
	tmp.Close()
	if err != nil {
		os.Remove(name)
		return nil, err
	}
	if err := os.Rename(src, name); err != nil {
		os.Remove(name)
		return nil, err
	}
	// Unix can sync a file opened read-only, whatever its mode; Windows
	// syncs only a handle open for writing.
	flag := os.O_RDONLY
	if runtime.GOOS == "windows" {
		flag = os.O_RDWR
		err = os.Chmod(name, 0o600)
	}
	var f *os.File
	if err == nil {
		f, err = os.OpenFile(name, flag, 0)
	}
	if err == nil && runtime.GOOS != "windows" {
		if err = f.Chmod(st.Mode().Perm()); err != nil {
			f.Close()
		}
	}
	if err != nil {
		os.Rename(name, src)
		return nil, err
	}
	return &File{File: f, target: target, from: src}, nil
}

// WriteFile writes data to path atomically with mode perm.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	f, err := Create(path, perm)
	if err != nil {
		return fmt.Errorf("failed to write %s: %w", path, err)
	}
	defer f.Abort()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("failed to write %s: %w", path, err)
	}
	return f.Commit()
}

// RemoveLeftovers removes the temporary files that writes of target
// interrupted by a crash left beside it. It is for a process that owns
// target (relay's data folder lock, or a caller's): a write of target in
// progress in another process would fail at its Commit. Errors are
// ignored; a leftover that stays costs only disk space.
func RemoveLeftovers(target string) {
	prefix := TempPrefix + filepath.Base(target) + "-"
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(target), prefix+"*"))
	for _, l := range leftovers {
		// os.CreateTemp puts digits where the pattern has its *: the
		// temporary file of "app-x" also begins with prefix for "app".
		if rest := strings.TrimPrefix(filepath.Base(l), prefix); rest != "" && strings.Trim(rest, "0123456789") == "" {
			os.Remove(l)
		}
	}
}

// SyncDir syncs a folder so that a rename in it survives a crash. Errors
// are ignored: some systems cannot sync folders, and the rename itself has
// succeeded.
func SyncDir(dir string) {
	if runtime.GOOS == "windows" {
		return
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
