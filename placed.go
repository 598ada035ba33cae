package relay

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/relay-sh/relay/internal/atomicfile"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/transfer"
)

// ErrWouldOverwrite is returned when placing a release's files would
// replace a file that no earlier release of the key placed there (a
// user's own file): nothing is placed. FetchOptions.Overwrite allows it.
var ErrWouldOverwrite = errors.New("would replace a file no release of this key placed")

// placedFiles records, for one key, which files its releases placed in
// which folders: <data dir>/placed/<key>.json. A release may replace what
// an earlier one placed, and nothing else.
type placedFiles struct {
	Key signer.PublicKey `json:"key"`
	// Folders maps an absolute folder to the slash-separated paths placed
	// in it, sorted.
	Folders map[string][]string `json:"folders"`
}

func placedPath(dataDir string, key signer.PublicKey) string {
	return filepath.Join(dataDir, "placed", key.String()+".json")
}

// loadPlaced reads what key's releases placed; nothing for a key that
// never placed files. A file that does not parse is an error: taking it
// for "nothing placed" would refuse updates, not harm, but would hide it.
func loadPlaced(dataDir string, key signer.PublicKey) (placedFiles, error) {
	pf := placedFiles{Key: key, Folders: map[string][]string{}}
	b, err := os.ReadFile(placedPath(dataDir, key))
	if errors.Is(err, fs.ErrNotExist) {
		return pf, nil
	}
	if err == nil {
		err = json.Unmarshal(b, &pf)
	}
	if err == nil && pf.Key != key {
		err = fmt.Errorf("it is %s's", pf.Key)
	}
	if err != nil {
		return pf, fmt.Errorf("%w: %s: %v", ErrState, placedPath(dataDir, key), err)
	}
	if pf.Folders == nil {
		pf.Folders = map[string][]string{}
	}
	return pf, nil
}

// add records paths as placed in folder and saves the record.
func (pf *placedFiles) add(dataDir, folder string, paths []string) error {
	all := append(slices.Clone(pf.Folders[folder]), paths...)
	slices.Sort(all)
	pf.Folders[folder] = slices.Compact(all)
	b, err := json.MarshalIndent(pf, "", "  ")
	if err != nil {
		return fmt.Errorf("failed to record placed files: %w", err)
	}
	p := placedPath(dataDir, pf.Key)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("failed to record placed files: %w", err)
	}
	return atomicfile.WriteFile(p, append(b, '\n'), 0o600)
}

// checkOverwrite returns ErrWouldOverwrite, naming the first such file,
// if placing files in out would replace a file that is not recorded as
// placed there by pf's key, does not already hold what the release has
// (the same size and SHA-256: replacing it changes nothing), and does not
// hold what the previously accepted release prev (nil if unknown) has
// under that path (placed by it before relay recorded what it placed).
func (pf *placedFiles) checkOverwrite(out string, files []record.File, prev *record.Manifest) error {
	for _, f := range files {
		target := filepath.Join(out, filepath.FromSlash(f.Path))
		if _, err := os.Lstat(target); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if slices.Contains(pf.Folders[out], f.Path) || copyVerified(io.Discard, target, f) == nil {
			continue
		}
		if prev != nil {
			if i := slices.IndexFunc(prev.Files, func(p record.File) bool { return p.Path == f.Path }); i >= 0 && copyVerified(io.Discard, target, prev.Files[i]) == nil {
				continue
			}
		}
		return fmt.Errorf("%w: %s is there already and no earlier release of %s placed it", ErrWouldOverwrite, target, pf.Key)
	}
	return nil
}

// place puts files from the verified bundle folder src in out (placeFiles)
// under the overwrite rule (checkOverwrite against the release accepted
// before, prev, unless overwrite is set), and records them as placed by
// the key.
func (c *Client) place(key signer.PublicKey, prev record.Infohash, src string, files []record.File, out string, overwrite bool, pl placement) ([]string, error) {
	abs, err := filepath.Abs(out)
	if err != nil {
		return nil, err
	}
	pf, err := loadPlaced(c.cfg.DataDir, key)
	if err != nil {
		return nil, err
	}
	if !overwrite {
		var pm *record.Manifest
		if !prev.IsZero() {
			if b, err := transfer.OpenBundle(transfer.BundlesDir(c.cfg.DataDir), prev); err == nil {
				pm = b.Manifest
			}
		}
		if err := pf.checkOverwrite(abs, files, pm); err != nil {
			return nil, err
		}
	}
	placed, err := placeFiles(src, files, out, pl)
	if err != nil {
		return placed, fmt.Errorf("failed to place files in %s: %w", out, err)
	}
	paths := make([]string, len(files))
	for i, f := range files {
		paths[i] = f.Path
	}
	return placed, pf.add(c.cfg.DataDir, abs, paths)
}
