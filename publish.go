package relay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/relay-sh/relay/dht"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/transfer"
)

// ErrNotNewer is returned by Publish for a version not above the one
// already published on the channel (PublishOptions.Force overrides).
var ErrNotNewer = errors.New("version not above the published one")

// ErrCurrentAhead is returned by Publish when the key's current record is
// signed more than record.DefaultMaxFuture ahead of this machine's clock
// (PublishOptions.AllowAhead overrides). A record's seq is the time it was
// signed, and a new one must be above the current one: built on a record
// from a machine whose clock ran a year ahead, every later record would be
// dated a year ahead too, and watchers refuse such records. Nodes forget
// the record ItemLifetime (2 h) after it was last stored; relay seed no
// longer stores such a record again, so publishing works again then.
var ErrCurrentAhead = errors.New("the current record is signed ahead of this clock")

// DefaultExpires is how long a published record stays fresh when
// PublishOptions.Expires is zero.
const DefaultExpires = 30 * 24 * time.Hour

// PublishOptions says what to publish.
type PublishOptions struct {
	// Key signs the record. Required.
	Key *signer.PrivateKey
	// Root, when Key is a release key of a root's delegation
	// (docs/spec/keys.md), is that root: the bundle's manifest names it
	// instead of Key, so that every release key that builds the same
	// files makes the same bundle, and users following the root keep
	// and prune it as the root's.
	Root signer.PublicKey
	// Channel is the release channel; empty means "stable".
	Channel string
	// Version is the release's version. Required.
	Version record.Version
	// Notes are the release notes, recorded in the manifest.
	Notes string
	// Sources are the files and folders released.
	Sources []transfer.Source
	// Recipients, when set, encrypt the release to them: only a holder
	// of one of their identities can read its files, names and notes
	// (docs/spec/encryption.md). Empty publishes it in the clear.
	Recipients []Recipient
	// Published is the time of publication recorded in the manifest; zero
	// means now. The same files and Published make the same bundle.
	Published time.Time
	// Expires is how long the record stays fresh; zero means
	// DefaultExpires.
	Expires time.Duration
	// WebSeeds are HTTP(S) URLs that serve the bundle's files (BEP 19).
	WebSeeds []string
	// Keep is how many releases of the channel stay in the data folder,
	// this one among them; zero means DefaultPublishKeep. It is recorded
	// there, so that a seeder or fetch on the same folder keeps as many.
	Keep int
	// OnStage is called as each stage begins (StageResolving,
	// StageBundling, StageStoring), with the release once it is known;
	// nil drops it.
	OnStage func(Stage, record.Release)
	// Rollout is the percentage of machines, 1 to 99, that take the
	// release now: a staged rollout (docs/spec/rollout.md), widened later
	// with SetRollout. 0 or 100 means every machine.
	Rollout int
	// Critical marks a security fix: no machine holds it back for a
	// rollout, and watchers install it as soon as they see it.
	Critical bool
	// Force publishes even when the channel already has this version or a
	// higher one.
	Force bool
	// AllowAhead builds on a current record signed ahead of this
	// machine's clock instead of returning ErrCurrentAhead: for a machine
	// whose own clock is behind. The new record is signed one above the
	// current seq, so it is dated as far ahead as that one.
	AllowAhead bool
}

// Published is what Publish did.
type Published struct {
	Bundle  *transfer.Bundle
	Release record.Release
	Packet  *record.SignedPacket
	// Previous is the release the channel had before, if any.
	Previous *record.Release
	// Stats says how many DHT nodes stored the record, RelaysStored how
	// many HTTP relays (Config.Relays).
	Stats        dht.PutStats
	RelaysStored int
	// Pruned are the channel's older bundles removed from the data folder
	// (PublishOptions.Keep).
	Pruned []*transfer.Bundle
	// LeftOut lists what the source folders held that was not bundled:
	// relay private key files and relay data folders (transfer.MakeOptions).
	LeftOut []transfer.LeftOut
}

// Publish makes the bundle in the data folder, starts seeding it, and
// signs and stores the channel's new release record, keeping every other
// record of the key's packet. It refuses (ErrNotNewer) a version not above
// the channel's current one unless Force is set. Seeding goes on until the
// Client is closed: see WaitForPeers.
func (c *Client) Publish(ctx context.Context, o PublishOptions) (*Published, error) {
	if o.Key == nil || o.Version.IsZero() {
		return nil, fmt.Errorf("%w: publish needs a key and a version", errBadOptions)
	}
	channel, err := checkedChannel(o.Channel)
	if err != nil {
		return nil, err
	}
	key := o.Key.PublicKey()
	now := c.now()
	published := o.Published
	if published.IsZero() {
		published = now
	}
	expires := o.Expires
	if expires <= 0 {
		expires = DefaultExpires
	}
	// Refuse early, before any bundle is made; Publish checks again
	// against the packet it replaces.
	var prev *record.Release
	stage := newStages(o.OnStage)
	stage.enter(StageResolving)
	cur, _, err := c.resolvePacket(ctx, key)
	switch {
	case errors.Is(err, dht.ErrNotFound):
	case err != nil:
		return nil, err
	default:
		if err := checkAhead(cur, now, o); err != nil {
			return nil, err
		}
		if prev, err = c.checkNewer(cur, channel, o); err != nil {
			return nil, err
		}
	}
	tc, err := c.transfer()
	if err != nil {
		return nil, err
	}
	stage.enter(StageBundling)
	var leftOut []transfer.LeftOut
	// The manifest names the key users follow: the root a release key
	// signs for, so that two release keys building the same files make
	// the same bundle.
	owner := key
	if !o.Root.IsZero() {
		owner = o.Root
	}
	mo := transfer.MakeOptions{
		LeftOut:   func(l transfer.LeftOut) { leftOut = append(leftOut, l) },
		Dir:       transfer.BundlesDir(c.cfg.DataDir),
		Sources:   o.Sources,
		Key:       owner,
		Channel:   channel,
		Version:   o.Version,
		Published: published,
		Notes:     o.Notes,
	}
	if len(o.Recipients) > 0 {
		done, err := seal(ctx, &mo, o.Recipients)
		if err != nil {
			return nil, err
		}
		defer done()
	}
	b, err := transfer.Make(ctx, mo)
	if err != nil {
		return nil, err
	}
	if _, err := tc.Seed(ctx, b.Infohash); err != nil {
		return nil, err
	}
	r := b.Release(now.Add(expires).UTC().Truncate(time.Second), o.WebSeeds...)
	r.Rollout, r.Critical = o.Rollout, o.Critical
	if r.Rollout == 100 {
		r.Rollout = 0
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	stage.rel = r
	stage.enter(StageStoring)
	p, stats, relays, err := c.publishPacket(ctx, o.Key, func(cur *record.SignedPacket) ([]byte, error) {
		var old []byte
		if cur != nil {
			if err := checkAhead(cur, c.now(), o); err != nil {
				return nil, err
			}
			if _, err := c.checkNewer(cur, channel, o); err != nil {
				return nil, err
			}
			old = cur.Packet
		}
		return record.SetRelease(key, old, r)
	})
	if err != nil {
		return nil, err
	}
	res := &Published{Bundle: b, Release: r, Packet: p, Previous: prev, Stats: stats, RelaysStored: relays, LeftOut: leftOut}
	// The key's swarm hears of it at once (relay_record): the watchers
	// this client serves, and theirs, need not wait for a DHT check.
	c.learnt(p)
	// The record names the new bundle now: older ones beyond Keep go.
	keep := o.Keep
	if keep <= 0 {
		keep = DefaultPublishKeep
	}
	if err := c.recordKeep(owner, channel, RolePublish, keep); err != nil {
		c.log.Warn("failed to record how many releases to keep", "err", err)
	}
	if res.Pruned, err = c.pruneChannel(tc, owner, channel, keep); err != nil {
		c.log.Warn("failed to remove old bundles", "channel", channel, "err", err)
	}
	return res, nil
}

// checkAhead returns ErrCurrentAhead when cur is signed more than
// record.DefaultMaxFuture ahead of now and o does not allow it.
func checkAhead(cur *record.SignedPacket, now time.Time, o PublishOptions) error {
	if o.AllowAhead || !signedAhead(cur, now) {
		return nil
	}
	return fmt.Errorf("%w: it was signed %s, %s ahead, and a record built on it would be as far ahead: watchers refuse records signed more than %s ahead of their clocks",
		ErrCurrentAhead, cur.Time().UTC().Format(time.RFC3339), roughly(cur.Time().Sub(now)), record.DefaultMaxFuture)
}

// signedAhead reports whether p is signed more than
// record.DefaultMaxFuture ahead of now: a record watchers refuse.
func signedAhead(p *record.SignedPacket, now time.Time) bool {
	return p.Time().Sub(now) > record.DefaultMaxFuture
}

// roughly writes a duration for people: days when it is more than two.
func roughly(d time.Duration) string {
	if d > 48*time.Hour {
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	}
	return d.Round(time.Minute).String()
}

// checkNewer returns the channel's release in cur, and ErrNotNewer if o's
// version is not above it and o.Force is not set.
func (c *Client) checkNewer(cur *record.SignedPacket, channel string, o PublishOptions) (*record.Release, error) {
	r, err := record.FindRelease(cur.Key, cur.Packet, channel)
	if errors.Is(err, record.ErrNoRelease) {
		return nil, nil
	}
	if err != nil {
		// A malformed record of our own channel is replaced.
		c.log.Warn("replacing a malformed record", "channel", channel, "err", err)
		return nil, nil
	}
	if !o.Force && o.Version.Compare(r.Version) <= 0 {
		return &r, fmt.Errorf("%w: %s has %s, this is %s", ErrNotNewer, channel, r.Version, o.Version)
	}
	return &r, nil
}

// WaitForPeers waits until n other peers have been seen holding the whole
// bundle ih, or ctx ends, and returns how many were seen. The bundle must
// be one this client serves.
func (c *Client) WaitForPeers(ctx context.Context, ih record.Infohash, n int) (int, error) {
	tc, err := c.transfer()
	if err != nil {
		return 0, err
	}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		s, ok := tc.Stats(ih)
		if !ok {
			return 0, fmt.Errorf("bundle %s is not served here", ih)
		}
		if s.CompletePeers >= n {
			return s.CompletePeers, nil
		}
		select {
		case <-ctx.Done():
			return s.CompletePeers, ctx.Err()
		case <-t.C:
		}
	}
}

// BundleStats returns the statistics of a bundle this client serves.
func (c *Client) BundleStats(ih record.Infohash) (transfer.Stats, bool) {
	tc, err := c.transfer()
	if err != nil {
		return transfer.Stats{}, false
	}
	return tc.Stats(ih)
}

// BundlePeers says which peers of a bundle this client served knew and how
// far it reached them (see transfer.Client.Reach): what a publisher that
// waited in vain tells its user.
func (c *Client) BundlePeers(ih record.Infohash) (peers []transfer.PeerReach, more int, ok bool) {
	tc, err := c.transfer()
	if err != nil {
		return nil, 0, false
	}
	return tc.Reach(ih)
}
