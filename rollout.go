package relay

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/relay-sh/relay/dht"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
)

// ErrHeldBack is returned by a Fetch with FetchOptions.Staged when the
// channel's new release is in a staged rollout this machine is not yet
// in (docs/spec/rollout.md): nothing was fetched, and the release
// accepted before is still the current one. It is no failure: the
// machine takes the release once the provider widens the rollout to its
// place, or a newer release comes.
var ErrHeldBack = errors.New("held back by a staged rollout")

// SecretFile is the name of the file in the data folder that holds the
// machine's rollout secret (docs/spec/rollout.md): 32 random bytes,
// made on first use, read by nobody else.
const SecretFile = "rollout-secret"

// RolloutSecret returns this data folder's rollout secret, making it on
// first use. It decides the machine's place in each staged rollout
// (record.RolloutPlace), and never leaves the machine: a new data folder
// is a new machine to rollouts.
func (c *Client) RolloutSecret() ([]byte, error) {
	return rolloutSecret(c.cfg.DataDir)
}

func rolloutSecret(dir string) ([]byte, error) {
	path := filepath.Join(dir, SecretFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		b, err = makeSecret(path)
	}
	if err != nil {
		return nil, fmt.Errorf("rollout secret: %w", err)
	}
	if len(b) < 16 {
		return nil, fmt.Errorf("rollout secret %s holds %d bytes, fewer than 16: remove it, and relay makes a new one", path, len(b))
	}
	return b, nil
}

// makeSecret writes a new secret at path unless another process did
// first, and returns the one path holds: written whole beside it, then
// linked into place, which fails if path exists.
func makeSecret(path string) ([]byte, error) {
	secret := make([]byte, 32)
	rand.Read(secret)
	tmp, err := os.CreateTemp(filepath.Dir(path), ".rollout-secret-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(secret)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if err := os.Link(tmp.Name(), path); err == nil {
		return secret, nil
	} else if !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	return os.ReadFile(path)
}

// holdBack returns ErrHeldBack, saying why, when a staged fetch is for a
// machine (c's data folder) not yet in r's staged rollout; it sets
// res.Place.
// floor is the version the machine holds: a machine that holds none
// takes any release, for a rollout stages updates, and the channel names
// no older release to install instead.
func (c *Client) holdBack(key signer.PublicKey, r record.Release, floor record.Version, res *FetchResult, staged bool) error {
	if !staged || r.Rollout <= 0 || floor.IsZero() {
		return nil
	}
	secret, err := c.RolloutSecret()
	if err != nil {
		return err
	}
	res.Place = record.RolloutPlace(secret, key, r.Channel, r.Version)
	if r.Takes(secret, key) {
		return nil
	}
	return fmt.Errorf("%w: %s %s is rolled out to %d%% of machines, and this machine's place is %d: keeping %s",
		ErrHeldBack, r.Channel, r.Version, r.Rollout, res.Place, floor)
}

// RolloutOptions says how to change the staged rollout of a channel's
// current release (Client.SetRollout).
type RolloutOptions struct {
	// Key signs the record. Required.
	Key *signer.PrivateKey
	// Channel is the release channel; empty means "stable".
	Channel string
	// Version must be the channel's current release: the record of no
	// other is changed.
	Version record.Version
	// Rollout and Critical are the record's new fields
	// (record.Release): the percentage of machines that take the
	// release, 1 to 99 (0 or 100: every machine), and whether it is a
	// critical release.
	Rollout  int
	Critical bool
	// AllowAhead is PublishOptions.AllowAhead.
	AllowAhead bool
}

// RolloutChanged is what SetRollout did.
type RolloutChanged struct {
	// Release is the new record, Previous the one it replaced.
	Release, Previous record.Release
	Packet            *record.SignedPacket
	Stats             dht.PutStats
	RelaysStored      int
}

// SetRollout signs the channel's current release again with a new
// Rollout and Critical, and stores it: the same version, bundle and
// manifest (a release's content never changes under one version), under
// a higher seq, with its expiry moved forward by the time since it was
// signed. This is how a provider widens a staged rollout, 10% then 50%
// then everyone: machines already in it keep the release, and the
// others take it at their next check. It returns ErrNotCurrent when the
// channel's current release is not Version.
func (c *Client) SetRollout(ctx context.Context, o RolloutOptions) (*RolloutChanged, error) {
	if o.Key == nil || o.Version.IsZero() {
		return nil, fmt.Errorf("%w: a rollout change needs a key and a version", errBadOptions)
	}
	if o.Rollout == 100 {
		o.Rollout = 0
	}
	channel, err := checkedChannel(o.Channel)
	if err != nil {
		return nil, err
	}
	key := o.Key.PublicKey()
	res := &RolloutChanged{}
	res.Packet, res.Stats, res.RelaysStored, err = c.publishPacket(ctx, o.Key, func(cur *record.SignedPacket) ([]byte, error) {
		if cur == nil {
			return nil, fmt.Errorf("%w: %s has no release to change", ErrNotCurrent, channel)
		}
		if err := checkAhead(cur, c.now(), PublishOptions{AllowAhead: o.AllowAhead}); err != nil {
			return nil, err
		}
		r, err := record.FindRelease(key, cur.Packet, channel)
		if errors.Is(err, record.ErrNoRelease) {
			return nil, fmt.Errorf("%w: %s has no release to change", ErrNotCurrent, channel)
		}
		if err != nil {
			return nil, err
		}
		if r.Version.Compare(o.Version) != 0 {
			return nil, fmt.Errorf("%w: %s has %s, not %s", ErrNotCurrent, channel, r.Version, o.Version)
		}
		res.Previous = r
		now := c.now()
		if life := r.Expires.Sub(cur.Time()); life > 0 {
			r.Expires = now.Add(life).UTC().Truncate(time.Second)
		}
		r.Rollout, r.Critical = o.Rollout, o.Critical
		if err := r.Validate(); err != nil {
			return nil, err
		}
		res.Release = r
		return record.SetRelease(key, cur.Packet, r)
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// ErrNotCurrent is returned by SetRollout when the version named is not
// the channel's current release.
var ErrNotCurrent = errors.New("not the channel's current release")
