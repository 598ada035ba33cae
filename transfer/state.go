package transfer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/storage"
	"github.com/relay-sh/relay/internal/atomicfile"
	"github.com/relay-sh/relay/record"
)

// A bundle's state file records which pieces relay verified and which
// files' SHA-256 it checked, with each file's size and modification time
// when it was written. On the next start a piece is trusted without
// hashing only if it was verified and none of its files changed since;
// every other piece with data on disk is hashed again. A file changed in
// place with its size and modification time restored is not noticed: the
// record guards against accidents and interrupted writes, not against
// someone with write access to the data folder.
type stateFile struct {
	Format   int             `json:"format"`
	Infohash record.Infohash `json:"infohash"`
	// Pieces is a bitmap, bit i (LSB first) set when piece i was verified.
	Pieces []byte      `json:"pieces"`
	Files  []stateItem `json:"files"`
}

type stateItem struct {
	Path    string `json:"path"`
	Size    int64  `json:"size"`
	ModTime int64  `json:"mtime"` // nanoseconds since the Unix epoch
	// Checked: the file's SHA-256 and size matched the manifest.
	Checked bool `json:"checked,omitempty"`
}

const stateFormat = 1

// span is one file of a torrent: where it lies in the torrent's data and
// on disk.
type span struct {
	path   string // slash-separated, relative to the bundle's folder
	osPath string
	offset int64
	length int64
}

func spans(dir string, info *metainfo.Info) []span {
	var out []span
	var off int64
	for _, f := range info.Files {
		p := strings.Join(f.Path, "/")
		out = append(out, span{path: p, osPath: filepath.Join(dir, info.Name, filepath.FromSlash(p)), offset: off, length: f.Length})
		off += f.Length
	}
	return out
}

// pieceFiles returns the indexes of the files holding data of piece i.
func pieceFiles(files []span, pieceLen int64, i int) []int {
	begin, end := int64(i)*pieceLen, int64(i+1)*pieceLen
	var out []int
	for j := sort.Search(len(files), func(j int) bool { return files[j].offset+files[j].length > begin }); j < len(files) && files[j].offset < end; j++ {
		if files[j].length > 0 {
			out = append(out, j)
		}
	}
	return out
}

// fileStat is a file's size and modification time; size is -1 for a
// missing file.
type fileStat struct{ size, mtime int64 }

func statFile(p string) (fileStat, error) {
	st, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return fileStat{size: -1}, nil
	}
	if err != nil {
		return fileStat{}, err
	}
	if !st.Mode().IsRegular() {
		return fileStat{}, fmt.Errorf("%s is not a regular file", p)
	}
	return fileStat{size: st.Size(), mtime: st.ModTime().UnixNano()}, nil
}

// bundleState is the verification state of one bundle, in memory.
type bundleState struct {
	ih       record.Infohash
	dir      string // <root>/<infohash>
	pieceLen int64
	files    []span
	known    []bool // the piece's completion is known
	complete []bool // the piece is verified
	checked  []bool // the file's SHA-256 matched the manifest
	// expected marks the files that were whole before this start: verified
	// by the state file, or at their full size when there was none. One of
	// them failing verification is damage, not a download in progress.
	expected []bool
	// present marks the files that had their full size when the bundle
	// was opened.
	present []bool
	dirty   bool
	// check hashes the bundle's pieces and files as they are written.
	check *pieceCheck
	// changed is closed (and replaced) when a piece is verified.
	changed chan struct{}
}

// writeState saves the state of a bundle to dir/.relay-state, recording
// each file's current size and time. Pieces and checks are a snapshot
// taken before the files are examined, so that no write after the
// snapshot can hide behind the recorded time.
func writeState(dir string, ih record.Infohash, files []span, complete, checked []bool) error {
	sf := stateFile{Format: stateFormat, Infohash: ih, Pieces: make([]byte, (len(complete)+7)/8)}
	for i, c := range complete {
		if c {
			sf.Pieces[i/8] |= 1 << (i % 8)
		}
	}
	for j, f := range files {
		st, err := statFile(f.osPath)
		if err != nil {
			return fmt.Errorf("failed to record bundle state: %w", err)
		}
		sf.Files = append(sf.Files, stateItem{Path: f.path, Size: st.size, ModTime: st.mtime, Checked: checked[j]})
	}
	b, err := json.Marshal(&sf)
	if err != nil {
		return fmt.Errorf("failed to encode bundle state: %w", err)
	}
	return atomicfile.WriteFile(filepath.Join(dir, stateName), append(b, '\n'), 0o600)
}

// loadState reads a bundle's state file and compares it with the files on
// disk.
func loadState(dir string, ih record.Infohash, info *metainfo.Info) (*bundleState, error) {
	files := spans(dir, info)
	n := info.NumPieces()
	bs := &bundleState{
		ih: ih, dir: dir, pieceLen: info.PieceLength, files: files,
		known: make([]bool, n), complete: make([]bool, n),
		checked: make([]bool, len(files)), expected: make([]bool, len(files)), present: make([]bool, len(files)),
		changed: make(chan struct{}),
	}
	var sf stateFile
	haveState := false
	if b, err := os.ReadFile(filepath.Join(dir, stateName)); err == nil {
		if json.Unmarshal(b, &sf) == nil && sf.Format == stateFormat && sf.Infohash == ih && len(sf.Pieces) == (n+7)/8 {
			haveState = true
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("failed to read bundle state: %w", err)
	}
	recorded := make(map[string]stateItem, len(sf.Files))
	for _, it := range sf.Files {
		recorded[it.Path] = it
	}
	stats := make([]fileStat, len(files))
	unchanged := make([]bool, len(files))
	for j, f := range files {
		st, err := statFile(f.osPath)
		if err != nil {
			return nil, err
		}
		stats[j] = st
		bs.present[j] = st.size == f.length
		it, ok := recorded[f.path]
		unchanged[j] = haveState && ok && st.size >= 0 && st.size == it.Size && st.mtime == it.ModTime
		bs.checked[j] = unchanged[j] && it.Checked && st.size == f.length
		if !haveState {
			bs.expected[j] = st.size == f.length
		}
	}
	pieceRecorded := func(i int) bool { return haveState && sf.Pieces[i/8]&(1<<(i%8)) != 0 }
	for j, f := range files {
		if haveState && f.length > 0 {
			bs.expected[j] = true
			for i := int(f.offset / bs.pieceLen); int64(i)*bs.pieceLen < f.offset+f.length; i++ {
				bs.expected[j] = bs.expected[j] && pieceRecorded(i)
			}
		}
	}
	for i := 0; i < n; i++ {
		fi := pieceFiles(files, bs.pieceLen, i)
		trusted, absent, same := pieceRecorded(i), false, haveState
		for _, j := range fi {
			trusted = trusted && unchanged[j]
			same = same && unchanged[j]
			// A piece whose file is missing or too short to hold its part
			// of the piece is certainly not complete.
			end := min(int64(i+1)*bs.pieceLen, files[j].offset+files[j].length) - files[j].offset
			absent = absent || stats[j].size < end
		}
		switch {
		case trusted:
			bs.known[i], bs.complete[i] = true, true
		case absent, same:
			// A piece not verified when the state was saved, in files
			// unchanged since, is still not complete.
			bs.known[i] = true
		}
	}
	return bs, nil
}

// completion is the piece completion store given to the file storage: it
// answers from memory and saves each bundle's state file from time to
// time and when the bundle is closed.
type completion struct {
	log     *slog.Logger
	mu      sync.Mutex
	bundles map[record.Infohash]*bundleState
	saveMu  sync.Mutex // serialises writes of state files
}

var _ interface {
	storage.PieceCompletion
	storage.PieceCompletionPersistenter
} = (*completion)(nil)

func newCompletion(log *slog.Logger) *completion {
	return &completion{log: log, bundles: make(map[record.Infohash]*bundleState)}
}

// Persistent reports false: the storage need not sync each completed piece
// for this store's sake. The state file records what was verified, with
// each file's time, so a piece whose file changed after the record is
// hashed again.
func (c *completion) Persistent() bool { return false }

// Get implements storage.PieceCompletion.
func (c *completion) Get(pk metainfo.PieceKey) (storage.Completion, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	bs := c.bundles[record.Infohash(pk.InfoHash)]
	if bs == nil || pk.Index < 0 || pk.Index >= len(bs.known) {
		return storage.Completion{}, nil
	}
	return storage.Completion{Ok: bs.known[pk.Index], Complete: bs.complete[pk.Index]}, nil
}

// Set implements storage.PieceCompletion.
func (c *completion) Set(pk metainfo.PieceKey, complete bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	bs := c.bundles[record.Infohash(pk.InfoHash)]
	if bs == nil || pk.Index < 0 || pk.Index >= len(bs.known) {
		return nil
	}
	if bs.known[pk.Index] && bs.complete[pk.Index] == complete {
		return nil
	}
	bs.known[pk.Index], bs.complete[pk.Index] = true, complete
	if complete {
		close(bs.changed)
		bs.changed = make(chan struct{})
	} else {
		for _, j := range pieceFiles(bs.files, bs.pieceLen, pk.Index) {
			bs.checked[j] = false
		}
	}
	bs.dirty = true
	return nil
}

// Close implements storage.PieceCompletion; the Client saves and drops
// bundles itself.
func (c *completion) Close() error { return nil }

// open loads the state of a bundle and starts answering for it.
func (c *completion) open(dir string, ih record.Infohash, info *metainfo.Info) error {
	bs, err := loadState(dir, ih, info)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.bundles[ih] = bs
	c.mu.Unlock()
	return nil
}

// close saves the state of a bundle and forgets it.
func (c *completion) close(ih record.Infohash) error {
	err := c.save(ih, true)
	c.mu.Lock()
	if bs := c.bundles[ih]; bs != nil {
		close(bs.changed)
		delete(c.bundles, ih)
	}
	c.mu.Unlock()
	return err
}

// errBundleClosed: the bundle left the client (or the client closed)
// while a fetch waited on it.
var errBundleClosed = errors.New("bundle closed")

// waitPiece waits until piece i of a bundle is verified (its data is then
// on disk for good).
func (c *completion) waitPiece(ctx context.Context, ih record.Infohash, i int) error {
	for {
		c.mu.Lock()
		bs := c.bundles[ih]
		if bs == nil {
			c.mu.Unlock()
			return errBundleClosed
		}
		if i < 0 || i >= len(bs.complete) {
			c.mu.Unlock()
			return fmt.Errorf("piece %d out of range", i)
		}
		if bs.complete[i] {
			c.mu.Unlock()
			return nil
		}
		ch := bs.changed
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// save writes the state file of a bundle if it changed, or always if force.
func (c *completion) save(ih record.Infohash, force bool) error {
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	c.mu.Lock()
	bs := c.bundles[ih]
	if bs == nil || !bs.dirty && !force {
		c.mu.Unlock()
		return nil
	}
	bs.dirty = false
	dir, files := bs.dir, bs.files
	complete, checked := append([]bool(nil), bs.complete...), append([]bool(nil), bs.checked...)
	c.mu.Unlock()
	if err := writeState(dir, ih, files, complete, checked); err != nil {
		c.mu.Lock()
		bs.dirty = true
		c.mu.Unlock()
		return err
	}
	return nil
}

// saveAll saves every bundle whose state changed.
func (c *completion) saveAll() {
	c.mu.Lock()
	var ihs []record.Infohash
	for ih, bs := range c.bundles {
		if bs.dirty {
			ihs = append(ihs, ih)
		}
	}
	c.mu.Unlock()
	for _, ih := range ihs {
		if err := c.save(ih, false); err != nil {
			c.log.Warn("failed to save bundle state", "infohash", ih, "err", err)
		}
	}
}

// setChecked records that file j's SHA-256 matched the manifest.
func (c *completion) setChecked(ih record.Infohash, j int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if bs := c.bundles[ih]; bs != nil && j < len(bs.checked) && !bs.checked[j] {
		bs.checked[j] = true
		bs.dirty = true
	}
}

// view returns a copy of a bundle's state: per piece whether verified and
// per file whether checked and whether expected whole.
func (c *completion) view(ih record.Infohash) (complete, checked, expected []bool, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	bs := c.bundles[ih]
	if bs == nil {
		return nil, nil, nil, false
	}
	return append([]bool(nil), bs.complete...), append([]bool(nil), bs.checked...), append([]bool(nil), bs.expected...), true
}

// heldBefore returns, per file of a bundle, whether the data folder held
// it whole when the bundle was opened: verified (expected) and at its
// full size. The files it did not hold came in since, through a fetch.
func (c *completion) heldBefore(ih record.Infohash) []bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	bs := c.bundles[ih]
	if bs == nil {
		return nil
	}
	held := make([]bool, len(bs.files))
	for j := range held {
		held[j] = bs.expected[j] && bs.present[j]
	}
	return held
}

// forget makes piece i of a bundle unknown, so that it is hashed again.
func (c *completion) forget(ih record.Infohash, i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if bs := c.bundles[ih]; bs != nil && i >= 0 && i < len(bs.known) {
		bs.known[i], bs.complete[i] = false, false
		for _, j := range pieceFiles(bs.files, bs.pieceLen, i) {
			bs.checked[j] = false
		}
		bs.dirty = true
	}
}

// setCheck records the pieceCheck of a bundle.
func (c *completion) setCheck(ih record.Infohash, pc *pieceCheck) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if bs := c.bundles[ih]; bs != nil {
		bs.check = pc
	}
}

// check returns the pieceCheck of a bundle, nil if the bundle is not
// open.
func (c *completion) check(ih record.Infohash) *pieceCheck {
	c.mu.Lock()
	defer c.mu.Unlock()
	if bs := c.bundles[ih]; bs != nil {
		return bs.check
	}
	return nil
}

// unknown returns the pieces of a bundle whose completion is not known:
// they have data on disk that was not verified, or changed since.
func (c *completion) unknown(ih record.Infohash) []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	bs := c.bundles[ih]
	if bs == nil {
		return nil
	}
	var out []int
	for i, k := range bs.known {
		if !k {
			out = append(out, i)
		}
	}
	return out
}
