package transfer

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"

	"github.com/relay-sh/relay/record"
)

// Seed serves the bundle ih from the data folder until Drop or Close, and
// announces it in the DHT. It first hashes the pieces relay has not
// verified (all of them for a bundle relay did not write; none for one it
// made or fetched and that has not changed since) and returns when that is
// done.
//
// A bundle of which only some files are here (a fetch of one platform) is
// served as it is. But a file that was whole (verified before, or at its
// full size in a bundle relay did not write) and now fails verification
// has changed on disk: Seed then serves nothing of the bundle and returns
// an error wrapping record.ErrFileMismatch. Relay remembers those pieces
// as missing; a Fetch of the bundle downloads them again.
func (c *Client) Seed(ctx context.Context, ih record.Infohash) (*Bundle, error) {
	return c.seed(ctx, ih, false)
}

// seed is Seed, and with quiet Serve.
func (c *Client) seed(ctx context.Context, ih record.Infohash, quiet bool) (*Bundle, error) {
	if c.w != nil {
		return c.w.seed(ctx, ih, quiet)
	}
	dir := filepath.Join(c.root, ih.String())
	info, infoBytes, err := loadMetainfo(dir, ih)
	if err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	a, err := c.add(ih, infoBytes)
	if err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	c.mu.Lock()
	if !quiet || !a.seeding {
		a.quiet = quiet
	}
	a.seeding = true
	if a.seedSince.IsZero() {
		a.seedSince = time.Now()
	}
	c.mu.Unlock()
	fail := func(err error) (*Bundle, error) {
		c.mu.Lock()
		a.seeding = false
		c.mu.Unlock()
		c.drop(ih, a)
		return nil, fmt.Errorf("seed: %w", err)
	}
	if err := waitVerified(ctx, a.t); err != nil {
		return fail(err)
	}
	complete, _, expected, ok := c.store.view(ih)
	if !ok {
		return fail(fmt.Errorf("bundle %s is not open", ih))
	}
	b, stats, err := seedable(c.root, ih, info, complete, expected)
	if err != nil {
		return fail(err)
	}
	c.mu.Lock()
	a.lastStat = stats
	a.key = b.Manifest.Key
	c.mu.Unlock()
	select { // its announcer looks for peers to dial now
	case a.wake <- struct{}{}:
	default:
	}
	c.log.Debug("seeding", "infohash", ih, "name", b.Name)
	return b, nil
}

// seedable checks, once the completion of each piece of bundle ih is
// known, that the bundle can be seeded (see Seed): every file that was
// whole still verifies, and relay.json does. It opens the bundle, and
// returns it with its files' sizes and times now.
func seedable(root string, ih record.Infohash, info *metainfo.Info, complete, expected []bool) (*Bundle, []fileStat, error) {
	files := spans(filepath.Join(root, ih.String()), info)
	var bad []string
	manifestOK := false
	for j, f := range files {
		whole := rangeComplete(complete, f, info.PieceLength)
		if expected[j] && !whole {
			bad = append(bad, f.path)
		}
		if f.path == record.ManifestName {
			manifestOK = whole
		}
	}
	if len(bad) > 0 {
		return nil, nil, fmt.Errorf("%w: bundle %s: %s changed on disk and failed verification", record.ErrFileMismatch, ih, strings.Join(bad, ", "))
	}
	if !manifestOK {
		return nil, nil, fmt.Errorf("bundle %s has no verified %s", ih, record.ManifestName)
	}
	b, err := OpenBundle(root, ih)
	if err != nil {
		return nil, nil, err
	}
	stats := make([]fileStat, len(files))
	for j, f := range files {
		stats[j], _ = statFile(f.osPath)
	}
	return b, stats, nil
}

// Seeding reports whether the client serves bundle ih because Seed was
// called for it (and no Drop since).
func (c *Client) Seeding(ih record.Infohash) bool {
	if c.w != nil {
		return c.w.seeding(ih)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	a := c.bundles[ih]
	return a != nil && a.seeding
}

// SeedAll seeds every bundle in the data folder (see Seed). It returns the
// bundles it serves, and the errors of those it refused, joined.
func (c *Client) SeedAll(ctx context.Context) ([]*Bundle, error) {
	ihs, err := ListBundles(c.root)
	if err != nil {
		return nil, err
	}
	var out []*Bundle
	var errs []error
	for _, ih := range ihs {
		b, err := c.Seed(ctx, ih)
		if err != nil {
			if ctx.Err() != nil {
				return out, ctx.Err()
			}
			errs = append(errs, err)
			continue
		}
		out = append(out, b)
	}
	return out, errors.Join(errs...)
}

// rangeComplete reports whether every piece holding data of f is verified.
func rangeComplete(complete []bool, f span, pieceLen int64) bool {
	if f.length == 0 {
		return true
	}
	for i := f.offset / pieceLen; i*pieceLen < f.offset+f.length; i++ {
		if !complete[i] {
			return false
		}
	}
	return true
}

// waitVerified waits until the completion of every piece of t is known
// and no piece is being hashed.
func waitVerified(ctx context.Context, t *torrent.Torrent) error {
	sub := t.SubscribePieceStateChanges()
	defer sub.Close()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		busy := false
		for _, r := range t.PieceStateRuns() {
			if !r.Ok || r.Checking || r.Hashing || r.QueuedForHash || r.Marking {
				busy = true
				break
			}
		}
		if !busy {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.Closed():
			return errors.New("bundle dropped")
		case <-sub.Values:
		case <-tick.C:
		}
	}
}

// recheck looks at the files of seeded bundles; the pieces of a file whose
// size or time changed are hashed again, and not served until they verify.
func (c *Client) recheck(ctx context.Context) {
	type job struct {
		ih record.Infohash
		a  *active
	}
	var jobs []job
	c.mu.Lock()
	for ih, a := range c.bundles {
		if a.seeding && a.fetches == 0 && a.lastStat != nil {
			jobs = append(jobs, job{ih, a})
		}
	}
	c.mu.Unlock()
	for _, j := range jobs {
		info := j.a.t.Info()
		if info == nil {
			continue
		}
		files := spans(filepath.Join(c.root, j.ih.String()), info)
		c.mu.Lock()
		last := j.a.lastStat
		c.mu.Unlock()
		now := make([]fileStat, len(files))
		var pieces []int
		var changed []string
		for k, f := range files {
			now[k], _ = statFile(f.osPath)
			if k < len(last) && now[k] != last[k] {
				changed = append(changed, f.path)
				for i := f.offset / info.PieceLength; i*info.PieceLength < f.offset+f.length; i++ {
					pieces = append(pieces, int(i))
				}
			}
		}
		c.mu.Lock()
		j.a.lastStat = now
		c.mu.Unlock()
		if len(pieces) == 0 {
			continue
		}
		c.log.Warn("seeded files changed on disk; verifying them again", "infohash", j.ih, "files", changed)
		for _, i := range pieces {
			c.store.forget(j.ih, i)
			j.a.t.Piece(i).UpdateCompletion()
		}
		for _, i := range pieces {
			if err := j.a.t.Piece(i).VerifyDataContext(ctx); err != nil {
				return
			}
		}
		if err := waitVerified(ctx, j.a.t); err != nil {
			return
		}
		failed := 0
		for _, i := range pieces {
			if !j.a.t.PieceState(i).Complete {
				failed++
			}
		}
		if failed > 0 {
			c.log.Warn("seeded bundle damaged: pieces no longer verify and are not served",
				"infohash", j.ih, "files", changed, "pieces", failed)
		}
	}
}
