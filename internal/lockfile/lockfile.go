// Package lockfile takes an exclusive lock on a file, so that two
// processes never use one data folder at once. The lock is advisory (it
// binds only processes that take it) and the system releases it when the
// process ends, however it ends: a killed process leaves no stale lock.
package lockfile

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ErrLocked is returned by Acquire when another process holds the lock.
var ErrLocked = errors.New("in use by another process")

// Lock is a held lock.
type Lock struct {
	f *os.File
}

// Acquire takes the lock on the file at path, creating it, without
// waiting. If another process holds it, the error wraps ErrLocked and
// names that process's id when it is known. The file then holds this
// process's id.
func Acquire(path string) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := lock(f); err != nil {
		f.Close()
		if errors.Is(err, ErrLocked) {
			if pid := holder(path); pid != 0 {
				return nil, fmt.Errorf("%s: %w (pid %d)", path, ErrLocked, pid)
			}
			return nil, fmt.Errorf("%s: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// The id is for people and error messages only: the lock is the
	// system's.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// Release releases the lock. The file stays, for the next holder.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := unlock(l.f)
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	return err
}

// holder returns the process id written in the lock file at path, or 0.
func holder(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}
