package relay

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/relay-sh/relay/internal/atomicfile"
	"github.com/relay-sh/relay/internal/faultpoint"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/transfer"
)

// placeFiles places files from the verified bundle folder src into out,
// each under its manifest path with its manifest mode (without group or
// other write permission, reduced by the umask: safeMode). A file this
// process hashed as it came in (pl.hashed) is moved or copied as pl says,
// without being hashed again; any other file is hashed again as it is
// copied, so what lands in out is exactly what the manifest names even if
// src changed since it was verified. Nothing takes its final name until
// every file is whole and checked: on any error, out is left as it was
// (and a file moved out of src is moved back).
func placeFiles(src string, files []record.File, out string, pl placement) ([]string, error) {
	var pending []*atomicfile.File
	defer func() {
		for _, p := range pending {
			p.Abort()
		}
	}()
	var placed []string
	for _, f := range files {
		target := filepath.Join(out, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return nil, fmt.Errorf("failed to make folder for %s: %w", f.Path, err)
		}
		// A run killed while placing left its temporary file here.
		atomicfile.RemoveLeftovers(target)
		p, err := pl.start(target, filepath.Join(src, filepath.FromSlash(f.Path)), f)
		if err != nil {
			return nil, err
		}
		pending = append(pending, p)
		placed = append(placed, target)
	}
	faultpoint.Hit(faultpoint.PlaceRename)
	for i, p := range pending {
		if err := p.Commit(); err != nil {
			return placed[:i], err
		}
	}
	pending = nil
	return placed, nil
}

// copyVerified copies the file at src to w, reading at most f.Size+1
// bytes, and checks its size and SHA-256 against f.
func copyVerified(w io.Writer, src string, f record.File) error {
	r, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("failed to read %s: %w", f.Path, err)
	}
	defer r.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(r, f.Size+1))
	if err != nil {
		return fmt.Errorf("failed to copy %s: %w", f.Path, err)
	}
	if n != f.Size {
		return fmt.Errorf("%w: %s has %d bytes, the manifest says %d", record.ErrFileMismatch, f.Path, n, f.Size)
	}
	if got := record.Digest(h.Sum(nil)); got != f.SHA256 {
		return fmt.Errorf("%w: %s has sha-256 %s, the manifest says %s", record.ErrFileMismatch, f.Path, got, f.SHA256)
	}
	return nil
}

// safeMode returns the mode a file placed or installed from a manifest is
// created with, before the umask reduces it further: the manifest's mode
// without write permission for group or others, whatever the manifest
// says (a publisher decides what a file holds, not who on this machine may
// change it).
func safeMode(m record.Mode) fs.FileMode {
	return fs.FileMode(m) &^ 0o022
}

// oldSuffix names the running executable moved aside on Windows, removed
// by CleanupReplaced at the next start.
const oldSuffix = ".relay-old"

// ReplaceExecutable replaces the file at target with the bundle file f
// from the verified bundle folder src, atomically: the new file is written
// in target's own folder, hashed while it is written, synced, given the
// old file's mode (or, if there is no old file, f's mode without write
// permission for group or others, reduced by the umask), and renamed over
// target. On Windows, where a running executable cannot be replaced, the
// old file is first renamed aside to target+".relay-old"; CleanupReplaced
// removes it later. On any error target is left as it was.
func ReplaceExecutable(target, src string, f record.File) error {
	create := func() (*atomicfile.File, error) { return atomicfile.CreateMasked(target, safeMode(f.Mode)) }
	if fi, err := os.Stat(target); err == nil {
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("cannot install over %s: not a regular file", target)
		}
		create = func() (*atomicfile.File, error) { return atomicfile.Create(target, fi.Mode().Perm()) }
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cannot install over %s: %w", target, err)
	}
	p, err := create()
	if err != nil {
		return fmt.Errorf("failed to install %s: %w", target, err)
	}
	defer p.Abort()
	if err := copyVerified(faultpoint.Writer(faultpoint.InstallWrite, p), filepath.Join(src, filepath.FromSlash(f.Path)), f); err != nil {
		return err
	}
	if err := p.Sync(); err != nil {
		return fmt.Errorf("failed to install %s: %w", target, err)
	}
	faultpoint.Hit(faultpoint.InstallRename)
	if runtime.GOOS == "windows" {
		old := target + oldSuffix
		os.Remove(old)
		if err := os.Rename(target, old); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("failed to move the running %s aside: %w", target, err)
		}
		if err := p.Commit(); err != nil {
			os.Rename(old, target)
			return err
		}
		return nil
	}
	return p.Commit()
}

// CleanupReplaced mends and removes what an interrupted or finished
// ReplaceExecutable left beside target: temporary files of an install
// that was interrupted, and the old executable moved aside on Windows,
// which is put back if target is missing (the process was killed between
// the two renames), so that target is again the whole old executable.
// Call it when the program starts, before anything else installs over
// target.
func CleanupReplaced(target string) {
	old := target + oldSuffix
	if _, err := os.Lstat(target); errors.Is(err, fs.ErrNotExist) {
		if os.Rename(old, target) == nil {
			atomicfile.SyncDir(filepath.Dir(target))
		}
	}
	os.Remove(old)
	atomicfile.RemoveLeftovers(target)
}

// InstalledIsAccepted reports whether the program at path is the release
// this data folder accepted for key's channel: the accepted bundle's file
// for this platform, compared as an install checks what it writes (size
// and SHA-256, copyVerified). With nothing accepted, or a state that
// cannot be read (Fetch reports that), it reports true: there is nothing
// to install again. When the program differs, or the accepted bundle is no
// longer here to compare with, it reports false: a watcher given path then
// installs the accepted release again (FetchOptions.Again on its first
// check), instead of taking it as installed because another command once
// fetched it into this data folder.
func (c *Client) InstalledIsAccepted(key signer.PublicKey, channel, path string) bool {
	st, err := c.State(key, channel)
	if err != nil || st.Infohash.IsZero() {
		return true
	}
	b, err := transfer.OpenBundle(transfer.BundlesDir(c.cfg.DataDir), st.Infohash)
	if err != nil {
		return false
	}
	f, err := Executable(b.Manifest, runtime.GOOS, runtime.GOARCH)
	return err == nil && copyVerified(io.Discard, path, f) == nil
}
