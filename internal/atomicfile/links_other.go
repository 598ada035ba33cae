//go:build !unix

package atomicfile

import "io/fs"

// linked reports false: this system's file information does not count a
// file's names. (relay makes hard links between bundles only where it
// can count them: see transfer.Make.)
func linked(fs.FileInfo) bool { return false }
