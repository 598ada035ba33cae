package update

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/relay-sh/relay/internal/atomicfile"
	"github.com/relay-sh/relay/record"
)

// ErrRolledBack: a new version started again without having confirmed
// that it works, and Started put the previous executable back; or a
// release rolled back so is found again, and refused. The program runs
// the new version until it restarts (Restart).
var ErrRolledBack = errors.New("rolled back an unconfirmed release")

// previousSuffix and confirmSuffix name the files kept beside the
// executable with Config.Confirm: the previous executable, and what is
// pending confirmation or was rolled back.
const (
	previousSuffix = ".relay-previous"
	confirmSuffix  = ".relay-confirm"
)

// PreviousPath returns where, with Config.Confirm, the executable that the
// last install replaced is kept: <executable>.relay-previous.
func PreviousPath(exe string) string { return exe + previousSuffix }

func confirmPath(exe string) string { return exe + confirmSuffix }

// confirmState is what the confirm file beside the executable holds.
type confirmState struct {
	// Pending is the release installed and not yet confirmed.
	Pending *pendingRelease `json:"pending,omitempty"`
	// RolledBack is the release last rolled back, never installed again.
	RolledBack *releaseID `json:"rolled_back,omitempty"`
}

type releaseID struct {
	Version  record.Version `json:"version"`
	Manifest record.Digest  `json:"manifest"`
}

func (id *releaseID) is(r record.Release) bool {
	return id != nil && id.Version.Compare(r.Version) == 0 && id.Manifest == r.Manifest
}

type pendingRelease struct {
	releaseID
	// Previous is the version of the executable it replaced, kept at
	// PreviousPath.
	Previous record.Version `json:"previous"`
	// Starts counts the times it started (Started).
	Starts int `json:"starts"`
}

// loadConfirm reads the confirm file of exe; none is an empty state.
func loadConfirm(exe string) (confirmState, error) {
	var st confirmState
	b, err := os.ReadFile(confirmPath(exe))
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return confirmState{}, fmt.Errorf("%s: %w", confirmPath(exe), err)
	}
	return st, nil
}

func saveConfirm(exe string, st confirmState) error {
	if st.Pending == nil && st.RolledBack == nil {
		if err := os.Remove(confirmPath(exe)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(confirmPath(exe), append(b, '\n'), 0o644)
}

// Started tells the updater that the program has started, first thing in
// main after the health check (IsHealthCheck) and New. With
// Config.Confirm, a version installed by Apply and never confirmed
// (Confirm) counts its starts: at its second start (it crashed, hung and
// was killed, or was stopped before it could confirm) Started puts the
// previous executable back, refuses that release from then on, and
// returns an error wrapping ErrRolledBack. The program should then
// Restart into the previous version, or exit. Without Config.Confirm, or
// when nothing is pending, it does nothing.
//
// A program that crashes before it calls Started is not rolled back:
// the health check (Config.HealthCheck) is for that.
func (u *Updater) Started() error {
	if !u.cfg.Confirm {
		return nil
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	st, err := loadConfirm(u.exe)
	if err != nil {
		return fmt.Errorf("failed to read what awaits confirmation: %w", err)
	}
	p := st.Pending
	if p == nil || p.Version.Compare(u.cfg.Version) != 0 {
		// Nothing pending, or this is not the pending version: the
		// executable was replaced by other means since.
		return nil
	}
	p.Starts++
	if p.Starts < 2 {
		if err := saveConfirm(u.exe, st); err != nil {
			return fmt.Errorf("failed to count the start of %s: %w", p.Version, err)
		}
		u.log.Info("running a new version that awaits confirmation", "version", p.Version, "previous", p.Previous)
		return nil
	}
	if err := putBack(u.exe, PreviousPath(u.exe)); err != nil {
		return fmt.Errorf("%s started again without confirming, and %s could not be put back: %w", p.Version, p.Previous, err)
	}
	st.Pending, st.RolledBack = nil, &p.releaseID
	if err := saveConfirm(u.exe, st); err != nil {
		u.log.Warn("rolled back, but could not record it: the release may be installed again", "version", p.Version, "err", err)
	}
	u.log.Warn("rolled back a new version that never confirmed it works", "version", p.Version, "previous", p.Previous)
	return fmt.Errorf("%w: %s started again without confirming that it works; %s is back in %s", ErrRolledBack, p.Version, p.Previous, u.exe)
}

// Confirm tells the updater that the running version works: with
// Config.Confirm, Started will not roll it back. A program calls it once
// it knows, say after it served its first requests or ran for a while.
// It does nothing when the running version awaits no confirmation.
func (u *Updater) Confirm() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	st, err := loadConfirm(u.exe)
	if err != nil {
		return fmt.Errorf("failed to read what awaits confirmation: %w", err)
	}
	if st.Pending == nil || st.Pending.Version.Compare(u.cfg.Version) != 0 {
		return nil
	}
	v := st.Pending.Version
	st.Pending = nil
	if err := saveConfirm(u.exe, st); err != nil {
		return fmt.Errorf("failed to confirm %s: %w", v, err)
	}
	u.log.Info("confirmed the new version", "version", v)
	return nil
}

// rolledBack returns an ErrRolledBack if r is the release rolled back
// from this executable, else nil.
func (u *Updater) rolledBack(r record.Release) error {
	st, err := loadConfirm(u.exe)
	if err != nil || !st.RolledBack.is(r) {
		return nil
	}
	return fmt.Errorf("%w: release %s was rolled back here; a later one is needed", ErrRolledBack, r.Version)
}

// putBack renames the executable kept at prev over exe. On Windows, where
// the running exe cannot be replaced, exe is first moved aside, as
// relay.ReplaceExecutable does (CleanupReplaced removes it later).
func putBack(exe, prev string) error {
	if _, err := os.Stat(prev); err != nil {
		return err
	}
	if runtime.GOOS == "windows" {
		old := exe + ".relay-old"
		os.Remove(old)
		if err := os.Rename(exe, old); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := os.Rename(prev, exe); err != nil {
		return err
	}
	atomicfile.SyncDir(filepath.Dir(exe))
	return nil
}
