package relay

import (
	"context"
	"errors"
	"time"

	"github.com/relay-sh/relay/internal/backoff"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/transfer"
)

// Defaults of WatchOptions.
const DefaultInterval = 10 * time.Minute

// EventKind says what a watch event reports.
type EventKind string

// The events Watch reports.
const (
	// EventChecked: the channel was resolved and nothing is new.
	EventChecked EventKind = "up-to-date"
	// EventFound: a new release passed the record checks; fetching it.
	EventFound EventKind = "found"
	// EventWaiting: a download has made no progress for a while;
	// Event.Waiting says what it waits for. It goes on until
	// FetchOptions.StallTimeout, or a newer release takes its place.
	EventWaiting EventKind = "waiting"
	// EventInstalled: a new release was fetched, verified and installed.
	EventInstalled EventKind = "installed"
	// EventRefused: a record, manifest or file failed verification; nothing
	// was installed and the state is unchanged.
	EventRefused EventKind = "refused"
	// EventHeldBack: the new release is in a staged rollout this machine
	// is not yet in (FetchOptions.Staged, ErrHeldBack): not installed, and
	// checked again at the interval. Result.Place is the machine's place.
	EventHeldBack EventKind = "held-back"
	// EventStale: the current record is past its expiry; not installed.
	EventStale EventKind = "stale"
	// EventRevoked: the installed release was signed by a key the root's
	// delegation now revokes, and nothing newer replaces it
	// (ErrRevokedInstall).
	EventRevoked EventKind = "revoked"
	// EventError: the network or the machine failed; retrying with backoff.
	EventError EventKind = "error"
)

// Event is one thing a watch saw.
type Event struct {
	Time    time.Time
	Kind    EventKind
	Version record.Version
	// Result is set for EventInstalled, EventChecked and EventHeldBack.
	Result *FetchResult
	// Err is set for EventRefused, EventStale and EventError.
	Err error
	// Retry is how long until the next check.
	Retry time.Duration
	// Waiting is set for EventWaiting.
	Waiting *Waiting
	// Follow, Bundle, Stored and Expires are set by Seed's events: the
	// followed key and channel, the bundle served or pruned, how many DHT
	// nodes stored a record, a re-signed record's new expiry.
	Follow  Follow
	Bundle  *transfer.Bundle
	Stored  int
	Expires time.Time
}

// WatchOptions configures Watch.
type WatchOptions struct {
	FetchOptions
	// Interval is the time between DHT checks; zero means
	// DefaultInterval. Each wait is jittered, drawn uniformly from half to
	// one and a half times it, so that a fleet does not ask the DHT all at
	// once; while a peer that takes relay_record messages is connected in
	// the release's swarm, checks are put off up to PushBackoff times
	// further, up to MaxPushBackoff with many such peers
	// (docs/spec/relay-record.md).
	Interval time.Duration
	// OnEvent receives every event; nil drops them.
	OnEvent func(Event)
	// NoServe keeps the installed release to this machine. By default
	// Watch serves it to other peers (announced in the DHT, within
	// Config.UploadRate) until ctx ends: from its start the release this
	// data folder accepted before, then each release it installs, so
	// that a fleet of watchers fetches from each other and not only from
	// the publisher's seeders. With NoServe a release is served only
	// while it downloads.
	NoServe bool
}

// Watch follows a key's channel until ctx ends: at every interval it runs
// Fetch, which installs each new release that passes the whole
// verification chain. FetchOptions.Again applies to the first check that
// succeeds: the accepted release is installed again once. Network failures are retried with a backoff that
// starts at a few seconds and grows to the interval (a download that
// stalls, ErrStalled, is one); while a release downloads, the channel is
// resolved again every interval, and a newer release takes its place;
// verification
// failures, and releases no identity of FetchOptions.Identities reads
// (ErrNoIdentity), are reported and the watch goes on. It returns nil when ctx is
// cancelled, and an error only for what retrying cannot mend (bad options,
// unreadable state, ErrWouldOverwrite: a user's own file in the way).
//
// With FetchOptions.Staged (relay watch sets it) a release in a staged
// rollout this machine is not yet in is reported (EventHeldBack) and
// checked again at each interval, or at once when a peer of the key's
// swarm tells of a newer record (the rollout widened, or a newer
// release). A critical release is never held back, and, like every
// release, is installed as soon as a check or a peer's record shows it:
// not at the next interval.
func (c *Client) Watch(ctx context.Context, o WatchOptions) error {
	interval := o.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	emit := func(e Event) {
		if o.OnEvent != nil {
			e.Time = c.now()
			o.OnEvent(e)
		}
	}
	if o.Recheck <= 0 {
		o.Recheck = interval
	}
	onWaiting := o.OnWaiting
	o.OnWaiting = func(w Waiting) {
		if onWaiting != nil {
			onWaiting(w)
		}
		emit(Event{Kind: EventWaiting, Version: w.Release.Version, Waiting: &w})
	}
	if o.Staged {
		// Made now, so that a data folder that cannot keep one says so
		// at the start, and the machine's place never depends on when
		// it first met a rollout.
		if _, err := c.RolloutSecret(); err != nil {
			return err
		}
	}
	checks := backoff.Checks{Interval: interval}
	channel := channelName(o.Channel)
	pw := c.AwaitPushes(o.Key, channel)
	defer pw.Close()
	if !o.NoServe {
		c.serveAccepted(ctx, o.Key, o.Channel, emit)
	}
	pushed := false // a peer told of a packet: check the packets held
	for {
		pw.Mark()
		res, err, quiet := c.fetchWoken(ctx, o.FetchOptions, pushed)
		if ctx.Err() != nil && err != nil {
			// Interrupted. A fetch that finished before it saw the
			// interruption installed its release: that is still said.
			return nil
		}
		again := o.Again
		if err == nil {
			// Again holds until one check has installed the release again.
			o.Again = false
		}
		if quiet {
			// Nothing to say, and the DHT is checked when it was due.
			if pushed, err = pw.Wait(ctx); err != nil {
				return nil
			}
			continue
		}
		var ev Event
		switch {
		case err == nil && res.UpToDate && !again:
			ev = Event{Kind: EventChecked, Version: res.Release.Version, Result: res}
		case err == nil:
			ev = Event{Kind: EventInstalled, Version: res.Release.Version, Result: res}
		case errors.Is(err, ErrState) || errors.Is(err, errBadOptions) || errors.Is(err, ErrWouldOverwrite):
			return err
		case errors.Is(err, ErrRevokedInstall):
			// The version is the installed one, which a revoked key signed.
			ev = Event{Kind: EventRevoked, Err: err}
			if res != nil {
				ev.Version = res.Previous
			}
		case errors.Is(err, ErrHeldBack):
			ev = Event{Kind: EventHeldBack, Err: err, Result: res}
		case errors.Is(err, record.ErrExpired):
			ev = Event{Kind: EventStale, Err: err}
		case record.IsVerification(err) || errors.Is(err, ErrNoIdentity):
			// No identity reads it: a later release may be for this
			// watcher again.
			ev = Event{Kind: EventRefused, Err: err}
		default:
			ev = Event{Kind: EventError, Err: err}
		}
		if res != nil && ev.Version.IsZero() {
			ev.Version = res.Release.Version
		}
		wait := time.Until(pw.Next())
		if failed := ev.Kind == EventError; failed || !pushed || pw.Next().IsZero() {
			// A check that a peer's packet started leaves the DHT's
			// schedule as it was: a fleet told of a release at once
			// does not come to ask the DHT at once.
			wait = checks.Next(failed)
			pw.Schedule(wait, !failed)
		}
		ev.Retry = wait
		emit(ev)
		if err == nil {
			c.serveInstalled(ctx, res, o.NoServe, emit)
		}
		if err == nil {
			for _, b := range res.Pruned {
				emit(Event{Kind: EventPruned, Version: b.Manifest.Version, Bundle: b})
			}
		}
		if pushed, err = pw.Wait(ctx); err != nil {
			return nil
		}
	}
}
