//go:build !linux

package diskio

import "os"

// clone reports false: block sharing is only tried on Linux.
func clone(dst uintptr, src *os.File, n int64) bool { return false }

// StartWriteback does nothing on this system.
func StartWriteback(fd uintptr, off, n int64) {}
