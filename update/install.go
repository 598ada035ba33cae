package update

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
// folder dir and, with a health check, starts it and puts the old one
// back if it does not answer. On error the executable is the old one.
func (u *Updater) install(ctx context.Context, dir string, f record.File, v record.Version) error {
	hc := u.cfg.HealthCheck
	if hc == nil {
		if err := relay.ReplaceExecutable(u.exe, dir, f); err != nil {
			return fmt.Errorf("failed to replace the executable: %w", err)
		}
		return nil
	}
	backup := backupPath(u.exe)
	if err := makeBackup(u.exe, backup); err != nil {
		return fmt.Errorf("failed to keep a copy of the executable for the health check: %w", err)
	}
	defer os.Remove(backup)
	if err := relay.ReplaceExecutable(u.exe, dir, f); err != nil {
		return fmt.Errorf("failed to replace the executable: %w", err)
	}
	if err := hc.run(ctx, u.exe, v); err != nil {
		if rerr := os.Rename(backup, u.exe); rerr != nil {
			return fmt.Errorf("%w, and the old executable could not be put back (it is %s): %v", err, backup, rerr)
		}
		atomicfile.SyncDir(filepath.Dir(u.exe))
		u.log.Info("new executable failed its health check; the old one is back", "version", v, "err", err)
		return err
	}
	return nil
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
