package diskio

import (
	"os"

	"golang.org/x/sys/unix"
)

// clone makes the empty file dst share the blocks of src, which holds
// exactly n bytes (FICLONE). It reports false, changing nothing, where the
// file system cannot share blocks (ext4, tmpfs, two file systems).
func clone(dst uintptr, src *os.File, n int64) bool {
	if st, err := src.Stat(); err != nil || st.Size() != n {
		return false
	}
	return unix.IoctlFileClone(int(dst), int(src.Fd())) == nil
}

// StartWriteback asks the system to start writing the n bytes at off of
// the file fd to disk, and returns without waiting for them
// (sync_file_range with SYNC_FILE_RANGE_WRITE): a sync of the file later
// finds them written. The data of a file being downloaded or copied would
// otherwise stay in memory until the sync at its end wrote all of it at
// once. Errors are ignored: it is a hint.
func StartWriteback(fd uintptr, off, n int64) {
	if n > 0 {
		unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE)
	}
}
