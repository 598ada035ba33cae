package update

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/internal/atomicfile"
	"github.com/relay-sh/relay/record"
)

// backupSuffix names the copy of the old executable kept while the new one
// is health-checked.
const backupSuffix = ".relay-backup"

func backupPath(exe string) string { return exe + backupSuffix }

// install replaces the executable with the verified file f of the bundle
// folder dir, release r's, and, with a health check, starts it and puts
// the old one back if it does not answer. With Config.Confirm the old one
// stays at PreviousPath and r awaits confirmation. On error the executable
// is the old one.
func (u *Updater) install(ctx context.Context, dir string, f record.File, r record.Release) error {
	hc, keep := u.cfg.HealthCheck, u.cfg.Confirm
	if hc == nil && !keep {
		if err := relay.ReplaceExecutable(u.exe, dir, f); err != nil {
			return replaceError(u.exe, err)
		}
		return nil
	}
	backup := backupPath(u.exe)
	if keep {
		backup = PreviousPath(u.exe)
	}
	if err := makeBackup(u.exe, backup); err != nil {
		return permissionError("cannot replace "+u.exe, fmt.Errorf("failed to keep a copy of the executable: %w", err))
	}
	if !keep {
		defer os.Remove(backup)
	}
	var before confirmState
	if keep {
		// What was pending is replaced; a release rolled back stays
		// refused.
		before, _ = loadConfirm(u.exe)
		st := before
		st.Pending = &pendingRelease{releaseID: releaseID{Version: r.Version, Manifest: r.Manifest}, Previous: u.current()}
		if err := saveConfirm(u.exe, st); err != nil {
			return permissionError("cannot replace "+u.exe, fmt.Errorf("failed to record the release as awaiting confirmation: %w", err))
		}
	}
	undo := func() {
		if keep {
			saveConfirm(u.exe, before)
		}
	}
	if err := relay.ReplaceExecutable(u.exe, dir, f); err != nil {
		undo()
		return replaceError(u.exe, err)
	}
	if hc == nil {
		return nil
	}
	if err := hc.run(ctx, u.exe, r.Version); err != nil {
		if rerr := putBack(u.exe, backup); rerr != nil {
			return fmt.Errorf("%w, and the old executable could not be put back (it is %s): %v", err, backup, rerr)
		}
		undo()
		u.log.Info("new executable failed its health check; the old one is back", "version", r.Version, "err", err)
		return err
	}
	return nil
}

// replaceError is the error of a failed relay.ReplaceExecutable of exe:
// an ErrPermission if the system refused it.
func replaceError(exe string, err error) error {
	if perr := permissionError("cannot replace "+exe, err); perr != err {
		return perr
	}
	return fmt.Errorf("failed to replace the executable: %w", err)
}

// makeBackup makes backup hold the executable exe as it is now: a second
// name for the same file where the system allows it (exe is then renamed
// over, never written), a copy with the same mode otherwise. On Windows it
// is always a copy, which can be removed while exe runs.
func makeBackup(exe, backup string) error {
	os.Remove(backup)
	if runtime.GOOS != "windows" {
		if err := os.Link(exe, backup); err == nil {
			return nil
		}
	}
	fi, err := os.Stat(exe)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", exe)
	}
	src, err := os.Open(exe)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := atomicfile.Create(backup, fi.Mode().Perm())
	if err != nil {
		return err
	}
	defer dst.Abort()
	if _, err := io.Copy(dst, src); err != nil {
		return err
	}
	return dst.Commit()
}
