package update

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/relay-sh/relay/internal/atomicfile"
)

// ErrPermission: this process may not replace the executable (or use the
// data folder). Retrying cannot mend it: Run returns it at once. The
// error also wraps the system's, so errors.Is(err, fs.ErrPermission)
// holds for it too, unless the folder is read-only (syscall.EROFS).
//
// What mends it is for the program's installer to choose: run the program
// as the user who owns the executable's folder; leave updates to the
// package manager that installed it; or, for a program installed
// system-wide, let a service that runs as that folder's owner (root, say)
// update it, and have the program itself only notify (NotifyOnly).
var ErrPermission = errors.New("no permission to update the program")

// CheckPermissions reports whether this process could and should replace
// the executable: that no package manager installed it (ErrManaged,
// unless Config.AllowManaged), and that this process may create a file in
// the executable's folder and rename it over the executable
// (ErrPermission). It returns nil, or an error wrapping one of them that
// names the file and the reason. Apply and Run(Install) run it before
// they download anything.
func (u *Updater) CheckPermissions() error {
	if !u.cfg.AllowManaged {
		if err := managed(u.exe); err != nil {
			return err
		}
	}
	dir := filepath.Dir(u.exe)
	f, err := atomicfile.Create(u.exe, 0o600)
	if err != nil {
		return permissionError("cannot replace "+u.exe, fmt.Errorf("cannot create a file in %s: %w", dir, unwrapPath(err)))
	}
	f.Abort()
	if err := stickyDenied(dir, u.exe); err != nil {
		return permissionError("cannot replace "+u.exe, err)
	}
	return nil
}

// permissionError returns err as an ErrPermission, what failing, if it is
// one (permission denied, a read-only file system), else err.
func permissionError(what string, err error) error {
	if err == nil || errors.Is(err, ErrPermission) {
		return err
	}
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
		return fmt.Errorf("%w: %s (running as %s): %w", ErrPermission, what, whoami(), err)
	}
	return err
}

// unwrapPath drops the *PathError around a system error whose path the
// message already names.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// whoami names the user this process runs as, for messages.
func whoami() string {
	if uid := os.Geteuid(); uid >= 0 {
		return fmt.Sprintf("uid %d", uid)
	}
	return "this user"
}
