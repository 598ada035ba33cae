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

// Dir walks the folder dir and adds up its regular files. A file removed
// during the walk is skipped.
func Dir(dir string) (Usage, error) {
	var u Usage
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
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
		if fi.ModTime().After(u.Modified) {
			u.Modified = fi.ModTime()
		}
		if fi.Mode().IsRegular() {
			u.Files++
			u.Bytes += allocated(fi)
		}
		return nil
	})
	return u, err
}
