//go:build unix

package update

import (
	"fmt"
	"os"
	"syscall"
)

// stickyDenied reports, as an error, that exe may not be renamed over
// because its folder is sticky (like /tmp) and neither the folder nor exe
// belongs to this process's user.
func stickyDenied(dir, exe string) error {
	uid := os.Geteuid()
	if uid == 0 {
		return nil
	}
	dfi, err := os.Stat(dir)
	if err != nil || dfi.Mode()&os.ModeSticky == 0 {
		return nil
	}
	efi, err := os.Lstat(exe)
	if err != nil {
		return nil
	}
	ds, ok1 := dfi.Sys().(*syscall.Stat_t)
	es, ok2 := efi.Sys().(*syscall.Stat_t)
	if !ok1 || !ok2 || int(ds.Uid) == uid || int(es.Uid) == uid {
		return nil
	}
	return fmt.Errorf("%s is sticky and %s belongs to uid %d: %w", dir, exe, es.Uid, syscall.EPERM)
}
