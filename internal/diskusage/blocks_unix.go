//go:build unix

package diskusage

import (
	"io/fs"
	"syscall"
)

// allocated returns the bytes fi's file holds on disk: its 512-byte
// blocks, as du counts them.
func allocated(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int64(st.Blocks) * 512
	}
	return fi.Size()
}

// links returns the identity of fi's file and its number of names, for a
// file with more than one (a hard link).
func links(fi fs.FileInfo) (id inode, n int, ok bool) {
	st, isStat := fi.Sys().(*syscall.Stat_t)
	if !isStat || st.Nlink < 2 {
		return inode{}, 1, false
	}
	return inode{uint64(st.Dev), uint64(st.Ino)}, int(st.Nlink), true
}
