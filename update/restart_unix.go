//go:build unix

package update

import (
	"os"
	"syscall"
)

// restart replaces this process with exe, keeping os.Args (its name
// included) and the environment.
func restart(exe string) error {
	args := os.Args
	if len(args) == 0 {
		args = []string{exe}
	}
	return syscall.Exec(exe, args, os.Environ())
}
