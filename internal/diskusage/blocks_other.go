//go:build !unix

package diskusage

import "io/fs"

// allocated returns fi's length: this system does not say how many blocks
// a file holds.
func allocated(fi fs.FileInfo) int64 { return fi.Size() }

// links reports no hard links: this system's file information does not
// name a file's identity.
func links(fs.FileInfo) (id inode, n int, ok bool) { return inode{}, 1, false }
