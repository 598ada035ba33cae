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
