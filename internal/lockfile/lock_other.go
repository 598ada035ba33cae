//go:build !unix && !windows

package lockfile

import "os"

// Systems without file locks get none: one data folder per process is
// then up to the user.
func lock(*os.File) error   { return nil }
func unlock(*os.File) error { return nil }
