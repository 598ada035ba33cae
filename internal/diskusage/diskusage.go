// Package diskusage measures what files take on disk: the blocks they
// hold, not their length, so that a sparse file of a download in progress
// counts only what was written. It never changes a file.
package diskusage

import (
	"errors"
	"io/fs"
	"path/filepath"
	"time"
)

// Usage is what a folder holds.
type Usage struct {
	// Bytes is the space its files take on disk (their length where the
	// system does not say).
	Bytes int64
	// Files is how many regular files it holds.
	Files int
	// Modified is the latest modification time among its files and
	// folders.
	Modified time.Time
}

// inode names a file on a device, whatever its names.
type inode struct{ dev, ino uint64 }

// Dir walks the folder dir and adds up its regular files, counting a file
// with several names in dir (hard links) once, as du does. A file removed
// during the walk is skipped.
func Dir(dir string) (Usage, error) {
	var u Usage
	seen := make(map[inode]bool)
	err := walk(dir, func(fi fs.FileInfo) {
		if fi.ModTime().After(u.Modified) {
			u.Modified = fi.ModTime()
		}
		if !fi.Mode().IsRegular() {
			return
		}
		if id, _, ok := links(fi); ok {
			if seen[id] {
				return
			}
			seen[id] = true
		}
		u.Files++
		u.Bytes += allocated(fi)
	})
	return u, err
}

// Freed returns the space that removing the folders dirs would free: the
// blocks of their regular files, but of a file with several names (hard
// links) only if every one of them is in dirs.
func Freed(dirs ...string) (int64, error) {
	var freed int64
	names := make(map[inode]int)
	for _, dir := range dirs {
		err := walk(dir, func(fi fs.FileInfo) {
			if !fi.Mode().IsRegular() {
				return
			}
			id, n, ok := links(fi)
			if !ok {
				freed += allocated(fi)
				return
			}
			if names[id]++; names[id] == n {
				freed += allocated(fi)
			}
		})
		if err != nil {
			return 0, err
		}
	}
	return freed, nil
}

// walk calls fn with the information of every file and folder under dir,
// dir itself included, skipping those removed during the walk.
func walk(dir string, fn func(fs.FileInfo)) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		fn(fi)
		return nil
	})
}
