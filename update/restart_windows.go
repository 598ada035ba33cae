//go:build windows

package update

import (
	"os"
	"os/exec"
)

// restart starts exe with this process's arguments (quoted again as
// Windows programs parse them), environment and standard streams, and
// returns once it runs; the caller exits.
func restart(exe string) error {
	cmd := exec.Command(exe, os.Args[min(1, len(os.Args)):]...)
	cmd.Env = os.Environ()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	return cmd.Process.Release()
}
