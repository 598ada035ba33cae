package relay

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/relay-sh/relay/internal/backoff"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/transfer"
)

// Defaults of SeedOptions.
const (
	DefaultKeep = 3
	// DefaultSeedInterval is SeedOptions.Interval's default: shorter than a
	// watcher's, because a publisher waits for a seeder to hold its new
	// release, and one check costs a DHT lookup.
	DefaultSeedInterval = time.Minute
	DefaultRestore      = time.Hour
	// DefaultFetchTimeout is SeedOptions.FetchTimeout's default.
	DefaultFetchTimeout = 20 * time.Minute
)

// The events Seed reports besides those of Watch.
const (
	// EventSeeding: a bundle is served.
	EventSeeding EventKind = "seeding"
	// EventRestored: a followed key's packet was stored again.
	EventRestored EventKind = "restored"
	// EventResigned: the publisher's own record was signed again with a
	// later expiry.
	EventResigned EventKind = "resigned"
	// EventPruned: an old release's bundle was removed.
	EventPruned EventKind = "pruned"
)

// Follow names a key and channel a seeder follows.
type Follow struct {
	Key     signer.PublicKey
	Channel string
}

func (f Follow) String() string { return f.Key.String() + "/" + f.Channel }

// SeedOptions configures Seed. Every zero value is a documented default.
type SeedOptions struct {
	// Follow lists the keys and channels whose releases are fetched and
	// served as they appear, and whose records are stored again.
	Follow []Follow
	// Key, when set, is the publisher's own key: its records are signed
	// again, with the same release and a later expiry, before they expire.
	Key *signer.PrivateKey
	// Keep is how many releases of each followed channel to keep; zero
	// means DefaultKeep.
	Keep int
	// Interval is the time between checks of followed keys; zero means
	// DefaultSeedInterval. A check that fails (nothing published yet, the
	// network away) is tried again sooner: after a few seconds, doubling
	// up to Interval.
	Interval time.Duration
	// Restore is the time between stores of each followed key's latest
	// packet, kept even when Interval is longer; zero means
	// DefaultRestore. DHT nodes drop an item about two hours after it was
	// last stored: keep it well below that.
	Restore time.Duration
	// FetchTimeout bounds the fetch of one release, so that a release
	// nobody serves does not hold up the others and the re-stores; zero
	// means DefaultFetchTimeout.
	FetchTimeout time.Duration
	// OnEvent receives what the seeder does; nil drops it. It is called
	// from one goroutine at a time, and Seed returns only after the last
	// call has returned.
	OnEvent func(Event)
}

// Seed serves every bundle in the data folder and follows keys until ctx
// ends: it fetches and serves each new release of a followed channel
// (verified as Fetch does; each channel on its own, so that a release
// nobody serves delays no other), keeps the last Keep releases of each, stores
// the latest packet of every followed key again every Restore, and, given
// the publisher's key, signs its records again before they expire. It
// returns nil when ctx is cancelled. Failures along the way are reported
// as events and retried.
func (c *Client) Seed(ctx context.Context, o SeedOptions) error {
	if o.Keep <= 0 {
		o.Keep = DefaultKeep
	}
	if o.Interval <= 0 {
		o.Interval = DefaultSeedInterval
	}
	if o.Restore <= 0 {
		o.Restore = DefaultRestore
	}
	if o.FetchTimeout <= 0 {
		o.FetchTimeout = DefaultFetchTimeout
	}
	var emitMu sync.Mutex // OnEvent is called from one goroutine at a time
	emit := func(e Event) {
		if o.OnEvent != nil {
			emitMu.Lock()
			defer emitMu.Unlock()
			e.Time = c.now()
			o.OnEvent(e)
		}
	}
	tc, err := c.transfer()
	if err != nil {
		return err
	}
	served, err := tc.SeedAll(ctx)
	for _, b := range served {
		emit(Event{Kind: EventSeeding, Version: b.Manifest.Version, Bundle: b})
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		emit(Event{Kind: EventError, Err: err})
	}
	follow := slices.Clone(o.Follow)
	if o.Key != nil {
		own := Follow{Key: o.Key.PublicKey()}
		if !slices.ContainsFunc(follow, func(f Follow) bool { return f.Key == own.Key }) {
			// Its own records are stored again too, from what it resolves.
			follow = append(follow, own)
		}
	}
	// Each followed channel is checked on its own: a release nobody
	// serves holds its channel's fetch for up to FetchTimeout, and must
	// hold up neither the other channels nor the records' upkeep below.
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, f := range follow {
		if f.Channel == "" {
			continue // the publisher's own key, not followed for releases
		}
		// A fetch or prune in this data folder later keeps as many.
		if err := c.recordKeep(f.Key, f.Channel, RoleSeed, o.Keep); err != nil {
			emit(Event{Kind: EventError, Follow: f, Err: err})
		}
		wg.Go(func() {
			// A peer's packet (relay_record) wakes the channel's check
			// before the interval; the DHT is still checked at it.
			pw := c.AwaitPushes(f.Key, f.Channel)
			defer pw.Close()
			checks := backoff.Checks{Interval: o.Interval}
			pushed := false
			for {
				pw.Mark()
				fctx, cancel := context.WithTimeout(ctx, o.FetchTimeout)
				err := c.seedFollow(fctx, tc, f, o.Keep, pushed, emit)
				cancel()
				if ctx.Err() != nil {
					return
				}
				if err != nil || !pushed || pw.Next().IsZero() {
					wait := checks.Next(err != nil)
					pw.Schedule(wait, false) // seeders keep their interval
					if errors.Is(err, context.DeadlineExceeded) {
						err = fmt.Errorf("gave up after %s (the fetch timeout): %w", o.FetchTimeout, err)
					}
					if err != nil {
						emit(Event{Kind: EventError, Follow: f, Err: err, Retry: wait})
					}
				}
				if pushed, err = pw.Wait(ctx); err != nil {
					return
				}
			}
		})
	}
	// The records: signed again before they expire, and stored again
	// every Restore.
	latest := make(map[signer.PublicKey]*record.SignedPacket)
	var nextRestore time.Time // the zero time: at once
	for {
		if o.Key != nil {
			c.resign(ctx, o.Key, emit)
		}
		if now := c.now(); !now.Before(nextRestore) {
			nextRestore = now.Add(o.Restore)
			for _, k := range followedKeys(follow) {
				c.restore(ctx, k, latest, emit)
				// The roots and release keys its releases depend on.
				for _, ck := range c.chainKeys(k) {
					c.restore(ctx, ck, latest, emit)
				}
			}
		}
		// Wake for the next re-sign check or the next restore, whichever
		// comes first: a restore is never put off to the check after it.
		if !backoff.Sleep(ctx, max(0, min(backoff.Jitter(o.Interval), nextRestore.Sub(c.now())))) {
			return nil
		}
	}
}

func followedKeys(fs []Follow) []signer.PublicKey {
	var keys []signer.PublicKey
	for _, f := range fs {
		if !slices.Contains(keys, f.Key) {
			keys = append(keys, f.Key)
		}
	}
	return keys
}

// seedFollow fetches a followed channel's new release, serves it, and
// prunes the channel's old bundles. It reports refusals as events and
// returns what failed, to be tried again sooner.
// With pushed, the check is one a peer's packet woke (FetchOptions.Pushed):
// when the packets held name no new release it says nothing.
func (c *Client) seedFollow(ctx context.Context, tc *transfer.Client, f Follow, keep int, pushed bool, emit func(Event)) error {
	res, err, quiet := c.fetchWoken(ctx, FetchOptions{Key: f.Key, Channel: f.Channel, AllPlatforms: true, Keep: keep, Sealed: true}, pushed)
	var fetchPruned []*transfer.Bundle
	if res != nil {
		fetchPruned = res.Pruned
	}
	switch {
	case quiet:
		return nil
	case err != nil && record.IsVerification(err):
		emit(Event{Kind: EventRefused, Follow: f, Err: err})
		return nil
	case err != nil:
		return err
	case res.UpToDate:
		// Make sure it is served (after a restart it already is).
		if _, ok := tc.Stats(res.Release.Infohash); ok {
			return nil
		}
	}
	b, err := tc.Seed(ctx, res.Release.Infohash)
	if err != nil {
		return err
	}
	emit(Event{Kind: EventSeeding, Follow: f, Version: res.Release.Version, Bundle: b})
	pruned, err := c.prune(tc, f, keep)
	for _, p := range append(fetchPruned, pruned...) {
		emit(Event{Kind: EventPruned, Follow: f, Version: p.Manifest.Version, Bundle: p})
	}
	return err
}

// Prune removes from the data folder, and stops serving, the bundles of
// f's key and channel beyond the newest keep, and returns those removed.
func (c *Client) Prune(f Follow, keep int) ([]*transfer.Bundle, error) {
	tc, err := c.transfer()
	if err != nil {
		return nil, err
	}
	return c.prune(tc, f, keep)
}

// prune removes the bundles of a followed channel beyond the newest keep.
func (c *Client) prune(tc *transfer.Client, f Follow, keep int) ([]*transfer.Bundle, error) {
	return c.pruneChannel(tc, f.Key, f.Channel, keep)
}

// restore stores key's latest packet again: the one resolved now if the
// network still has it, else the newest this seeder has seen or accepted.
// A packet signed further ahead of this clock than watchers accept is
// never stored again (it is said once a round): kept alive, it would keep
// the publisher's next records dated as far ahead (ErrCurrentAhead).
func (c *Client) restore(ctx context.Context, key signer.PublicKey, latest map[signer.PublicKey]*record.SignedPacket, emit func(Event)) {
	f := Follow{Key: key}
	now := c.now()
	var ahead, best *record.SignedPacket
	consider := func(p *record.SignedPacket) {
		switch {
		case p == nil || best != nil && p.Seq <= best.Seq:
		case signedAhead(p, now):
			ahead = p
		default:
			best = p
		}
	}
	consider(latest[key])
	if p, _, err := c.resolvePacket(ctx, key); err == nil {
		consider(p)
	}
	if states, err := c.states.List(); err == nil {
		for _, st := range states {
			if st.Key == key && st.Packet != nil && st.Packet.Key == key {
				consider(st.Packet)
			}
		}
	}
	if ahead != nil {
		emit(Event{Kind: EventError, Follow: f, Err: fmt.Errorf("not storing the record of %s again: %w (signed %s, %s ahead)",
			key, ErrCurrentAhead, ahead.Time().UTC().Format(time.RFC3339), roughly(ahead.Time().Sub(now)))})
	}
	if best == nil {
		return
	}
	latest[key] = best
	stats, err := c.storePacket(ctx, best)
	if err != nil {
		if ctx.Err() == nil {
			emit(Event{Kind: EventError, Follow: f, Err: fmt.Errorf("store the record of %s again: %w", key, err)})
		}
		return
	}
	emit(Event{Kind: EventRestored, Follow: f, Stored: stats.Acked})
}

// resign signs the publisher's records again, each with the same release
// and a later expiry, when a quarter or less of its lifetime is left.
func (c *Client) resign(ctx context.Context, key *signer.PrivateKey, emit func(Event)) {
	pub := key.PublicKey()
	cur, _, err := c.resolvePacket(ctx, pub)
	if err != nil {
		return // nothing to keep alive, or the network is away: next time
	}
	now := c.now()
	if signedAhead(cur, now) {
		return // restore says why it is left to expire
	}
	channels, err := record.Channels(pub, cur.Packet)
	if err != nil {
		return
	}
	due := false
	for _, ch := range channels {
		if r, err := record.FindRelease(pub, cur.Packet, ch); err == nil && resignDue(r, cur, now) {
			due = true
		}
	}
	if !due {
		return
	}
	var renewed []record.Release
	_, stats, _, err := c.publishPacket(ctx, key, func(cur *record.SignedPacket) ([]byte, error) {
		if cur == nil {
			return nil, errors.New("the record disappeared")
		}
		renewed = renewed[:0]
		packet := cur.Packet
		for _, ch := range channels {
			r, err := record.FindRelease(pub, packet, ch)
			if err != nil || !resignDue(r, cur, now) {
				continue
			}
			r.Expires = now.Add(r.Expires.Sub(cur.Time())).UTC().Truncate(time.Second)
			if packet, err = record.SetRelease(pub, packet, r); err != nil {
				return nil, err
			}
			renewed = append(renewed, r)
		}
		return packet, nil
	})
	if err != nil {
		emit(Event{Kind: EventError, Follow: Follow{Key: pub}, Err: fmt.Errorf("re-sign: %w", err)})
		return
	}
	for _, r := range renewed {
		emit(Event{Kind: EventResigned, Follow: Follow{Key: pub, Channel: r.Channel}, Version: r.Version, Stored: stats.Acked, Expires: r.Expires})
	}
}

// resignDue reports whether r, signed in p, has a quarter or less of its
// lifetime left at now.
func resignDue(r record.Release, p *record.SignedPacket, now time.Time) bool {
	life := r.Expires.Sub(p.Time())
	return life > 0 && r.Expires.Sub(now) <= life/4
}
