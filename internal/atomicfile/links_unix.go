//go:build unix

package atomicfile

import (
	"io/fs"
	"syscall"
)

// linked reports whether fi's file has more than one name.
func linked(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Nlink > 1
}
