package relay

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/relay-sh/relay/internal/atomicfile"
	"github.com/relay-sh/relay/internal/diskusage"
	"github.com/relay-sh/relay/internal/lockfile"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/transfer"
)

// DefaultPublishKeep is PublishOptions.Keep's default: the release just
// published and the one before it.
const DefaultPublishKeep = 2

// The roles that keep releases in a data folder, as Data lists them.
const (
	RolePublish = "publish"
	RoleSeed    = "seed"
	RoleFetch   = "fetch"
)

// keepRule is how many releases of a key's channel one role asked the
// data folder to keep.
type keepRule struct {
	Key     signer.PublicKey `json:"key"`
	Channel string           `json:"channel"`
	Role    string           `json:"role"`
	Keep    int              `json:"keep"`
	Updated time.Time        `json:"updated"`
}

type keepFile struct {
	Rules []keepRule `json:"rules"`
}

// keepPath is the file under a data folder that records the keep rules.
func keepPath(dataDir string) string { return filepath.Join(dataDir, "keep.json") }

func loadKeepRules(dataDir string) ([]keepRule, error) {
	b, err := os.ReadFile(keepPath(dataDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read keep rules: %w", err)
	}
	var f keepFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("failed to read keep rules: %s: %w", keepPath(dataDir), err)
	}
	return f.Rules, nil
}

// recordKeep records that role keeps keep releases of key's channel in
// this data folder, so that a later fetch or prune in it keeps them too.
func (c *Client) recordKeep(key signer.PublicKey, channel, role string, keep int) error {
	rules, err := loadKeepRules(c.cfg.DataDir)
	if err != nil {
		return err
	}
	r := keepRule{Key: key, Channel: channel, Role: role, Keep: keep, Updated: c.now().UTC()}
	i := slices.IndexFunc(rules, func(o keepRule) bool { return o.Key == key && o.Channel == channel && o.Role == role })
	switch {
	case i < 0:
		rules = append(rules, r)
	case rules[i].Keep == keep:
		return nil
	default:
		rules[i] = r
	}
	b, err := json.MarshalIndent(keepFile{Rules: rules}, "", "  ")
	if err != nil {
		return fmt.Errorf("failed to encode keep rules: %w", err)
	}
	return atomicfile.WriteFile(keepPath(c.cfg.DataDir), append(b, '\n'), 0o644)
}

// keepFor returns how many releases of key's channel the rules recorded
// here keep, at least min.
func keepFor(rules []keepRule, key signer.PublicKey, channel string, min int) int {
	n := min
	for _, r := range rules {
		if r.Key == key && r.Channel == channel {
			n = max(n, r.Keep)
		}
	}
	return n
}

// BundleStatus says why a bundle is in the data folder, or that it is not
// needed.
type BundleStatus string

// The statuses of a bundle in a data folder.
const (
	// StatusCurrent: the release accepted for its channel (a fetch, watch
	// or seed re-installs or serves it).
	StatusCurrent BundleStatus = "current"
	// StatusKept: among the newest releases of its channel a role keeps.
	StatusKept BundleStatus = "kept"
	// StatusOld: beyond what any role keeps; PruneData removes it.
	StatusOld BundleStatus = "old"
	// StatusPartial: a download that has not got its manifest yet (or a
	// folder relay cannot read); a fetch resumes it. PruneData removes it
	// only when asked (PruneOptions.Partial).
	StatusPartial BundleStatus = "partial"
)

// StoredBundle is a bundle in a data folder.
type StoredBundle struct {
	Infohash record.Infohash
	// Name is the torrent's name (channel-version), when its metainfo is
	// here.
	Name string
	// Key, Channel and Version come from its manifest; Key is zero for a
	// partial download.
	Key     signer.PublicKey
	Channel string
	Version record.Version
	// Bytes is the space its files take on disk, a file it shares with
	// other bundles (a hard link, see transfer.Make) counted in each; Size
	// the bundle's whole size (zero when unknown).
	Bytes, Size int64
	Status      BundleStatus
	// Roles are the roles that keep releases of its channel here
	// (RolePublish, RoleSeed, RoleFetch).
	Roles []string
	// LastUsed is when its files or verification state last changed.
	LastUsed time.Time
	// Dir is its folder under the data folder.
	Dir string
}

// DataUsage is what a data folder holds.
type DataUsage struct {
	Bundles []StoredBundle
	// Bytes is the space the whole data folder takes, a file shared
	// between bundles counted once; Reclaimable what PruneData with the
	// same options would free.
	Bytes, Reclaimable int64
}

// PruneOptions says what PruneData removes (and ListData marks).
type PruneOptions struct {
	// Keep overrides, when above zero, how many releases of every channel
	// are kept. Zero keeps what each role recorded (publish and seed
	// --keep), and one release of a channel no role recorded. The release
	// a channel accepted is always kept.
	Keep int
	// Partial also removes partial downloads.
	Partial bool
	// DryRun removes nothing: the result says what would be removed.
	DryRun bool
}

// ListData returns what the data folder dataDir holds, and what Prune
// with o would remove (StatusOld, and StatusPartial with o.Partial). It
// changes nothing and takes no lock, so it runs beside a seeder.
func ListData(dataDir string, o PruneOptions) (*DataUsage, error) {
	rules, err := loadKeepRules(dataDir)
	if err != nil {
		return nil, err
	}
	states, err := newStateStore(dataDir).List()
	if err != nil {
		return nil, err
	}
	root := transfer.BundlesDir(dataDir)
	ihs, err := transfer.BundleDirs(root)
	if err != nil {
		return nil, err
	}
	type group struct {
		key     signer.PublicKey
		channel string
	}
	groups := map[group][]int{}
	u := &DataUsage{}
	for _, ih := range ihs {
		sb := StoredBundle{Infohash: ih, Dir: filepath.Join(root, ih.String()), Status: StatusPartial}
		du, err := diskusage.Dir(sb.Dir)
		if err != nil {
			return nil, err
		}
		sb.Bytes, sb.LastUsed = du.Bytes, du.Modified
		if b, err := transfer.OpenBundle(root, ih); err == nil {
			sb.Name, sb.Key, sb.Channel, sb.Version, sb.Size = b.Name, b.Manifest.Key, b.Manifest.Channel, b.Manifest.Version, b.Size
			g := group{sb.Key, sb.Channel}
			groups[g] = append(groups[g], len(u.Bundles))
		}
		u.Bundles = append(u.Bundles, sb)
	}
	for g, idx := range groups {
		var accepted record.Infohash
		var roles []string
		for _, st := range states {
			if st.Key == g.key && st.Channel == g.channel {
				accepted = st.Infohash
				roles = append(roles, RoleFetch)
			}
		}
		for _, r := range rules {
			if r.Key == g.key && r.Channel == g.channel && !slices.Contains(roles, r.Role) {
				roles = append(roles, r.Role)
			}
		}
		slices.Sort(roles)
		keep := o.Keep
		if keep <= 0 {
			keep = keepFor(rules, g.key, g.channel, 1)
		}
		slices.SortFunc(idx, func(a, b int) int { return u.Bundles[b].Version.Compare(u.Bundles[a].Version) })
		for n, i := range idx {
			b := &u.Bundles[i]
			b.Roles = roles
			switch {
			case b.Infohash == accepted:
				b.Status = StatusCurrent
			case n < keep:
				b.Status = StatusKept
			default:
				b.Status = StatusOld
			}
		}
	}
	slices.SortStableFunc(u.Bundles, func(a, b StoredBundle) int {
		if c := cmp.Compare(a.Key.String(), b.Key.String()); c != 0 || a.Key.IsZero() {
			return c
		}
		if c := cmp.Compare(a.Channel, b.Channel); c != 0 {
			return c
		}
		return b.Version.Compare(a.Version)
	})
	var removed []string
	for _, b := range u.Bundles {
		if b.Status == StatusOld || b.Status == StatusPartial && o.Partial {
			removed = append(removed, b.Dir)
		}
	}
	// A file an old bundle shares with a kept one (transfer.Make links
	// the same files) stays: it frees nothing.
	if u.Reclaimable, err = diskusage.Freed(removed...); err != nil {
		return nil, err
	}
	all, err := diskusage.Dir(dataDir)
	if err != nil {
		return nil, err
	}
	u.Bytes = all.Bytes
	return u, nil
}

// PruneData removes from the data folder dataDir what ListData with o
// marks for removal, and returns what it removed (with o.DryRun, what it
// would remove). It takes the data folder's lock: it fails with
// ErrDataDirInUse while a fetch, watch, seed or publish runs on it. It
// never touches files placed outside the data folder.
func PruneData(dataDir string, o PruneOptions) (*DataUsage, []StoredBundle, error) {
	if !o.DryRun {
		l, err := lockfile.Acquire(filepath.Join(dataDir, "lock"))
		if errors.Is(err, lockfile.ErrLocked) {
			return nil, nil, fmt.Errorf("%w: %w", ErrDataDirInUse, err)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("data folder: %w", err)
		}
		defer l.Release()
	}
	u, err := ListData(dataDir, o)
	if err != nil {
		return nil, nil, err
	}
	var removed []StoredBundle
	var errs []error
	for _, b := range u.Bundles {
		if b.Status != StatusOld && !(b.Status == StatusPartial && o.Partial) {
			continue
		}
		if !o.DryRun {
			if err := os.RemoveAll(b.Dir); err != nil {
				errs = append(errs, fmt.Errorf("failed to remove bundle %s: %w", b.Infohash, err))
				continue
			}
			os.RemoveAll(PlainDir(dataDir, b.Infohash))
		}
		removed = append(removed, b)
	}
	return u, removed, errors.Join(errs...)
}

// pruneChannel removes the bundles of key's channel beyond the newest
// keep (at least what the data folder's roles recorded), never the one
// accepted, and stops serving them. It returns those removed.
func (c *Client) pruneChannel(tc *transfer.Client, key signer.PublicKey, channel string, keep int) ([]*transfer.Bundle, error) {
	rules, err := loadKeepRules(c.cfg.DataDir)
	if err != nil {
		return nil, err
	}
	u, err := ListData(c.cfg.DataDir, PruneOptions{Keep: keepFor(rules, key, channel, max(keep, 1))})
	if err != nil {
		return nil, err
	}
	root := transfer.BundlesDir(c.cfg.DataDir)
	var pruned []*transfer.Bundle
	var errs []error
	for _, sb := range u.Bundles {
		if sb.Key != key || sb.Channel != channel || sb.Status != StatusOld {
			continue
		}
		b, err := transfer.OpenBundle(root, sb.Infohash)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if tc != nil {
			tc.Drop(b.Infohash)
		}
		if err := os.RemoveAll(sb.Dir); err != nil {
			errs = append(errs, fmt.Errorf("failed to remove bundle %s: %w", b.Infohash, err))
			continue
		}
		os.RemoveAll(PlainDir(c.cfg.DataDir, b.Infohash))
		pruned = append(pruned, b)
	}
	return pruned, errors.Join(errs...)
}
