package update

import (
	"context"
	"errors"
	"time"

	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/dht"
	"github.com/relay-sh/relay/internal/backoff"
	"github.com/relay-sh/relay/record"
)

// Mode says what Run does with a newer release.
type Mode int

const (
	// NotifyOnly makes Run return the first newer release it finds that
	// this platform can install (see Check: its manifest, notes and size
	// are known), installing nothing (the program tells its user, say).
	NotifyOnly Mode = iota
	// Install makes Run install the first newer release that passes every
	// check and return it. The program goes on as the old version until it
	// restarts: at once with Restart, or at its next start.
	Install
)

// Run checks for a newer release at once and then every Config.Interval,
// until it finds one (NotifyOnly) or installs one (Install), which it
// returns, or until ctx ends (it then returns ctx's error).
//
// A refused release (a failed verification or health check, no file for
// this platform) is logged and the checks go on; one whose download or
// health check failed is not tried again by this Run, so a bad release
// costs one download, not one per interval. A key or channel with nothing
// published yet is checked again at the interval, and so is a release in
// a staged rollout this machine is not yet in (ErrHeldBack): nothing to
// do yet, logged once; it is installed at the first check after the
// provider widens the rollout to this machine's place. Network failures are
// logged and retried sooner, from a few seconds up to the interval. An
// error no retry can mend, ErrPermission (the executable's folder or the
// data folder is not writable by this process) or ErrManaged, is
// returned at once:
// with Install, Run checks the executable's folder before anything else
// (CheckPermissions).
func (u *Updater) Run(ctx context.Context, mode Mode) (*Release, error) {
	interval := u.cfg.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	type bundle struct {
		ih record.Infohash
		m  record.Digest
	}
	failed := map[bundle]bool{}
	if mode == Install {
		if err := u.CheckPermissions(); err != nil {
			return nil, err
		}
	}
	// While Run serves, the peers of the release's swarm tell it of a
	// newer packet (relay_record): it checks at once, asking no DHT node.
	var pw *relay.PushWaiter
	if !u.cfg.NoServe {
		stop := u.serve(ctx)
		defer stop()
		u.mu.Lock()
		if u.serving != nil {
			pw = u.serving.AwaitPushes(u.cfg.Key, u.cfg.Channel)
			defer pw.Close()
		}
		u.mu.Unlock()
	}
	checks := backoff.Checks{Interval: interval}
	lastLogged := ""   // a message not to repeat at every check
	var next time.Time // when the DHT is checked next, without pw
	pushed := false
	for {
		if pw != nil {
			pw.Mark()
		}
		failure := "could not check for a new release"
		done := func() {}
		if u.cfg.NoServe {
			// One client for the check and the update that follows:
			// it holds the packets the check verified.
			done = u.share(ctx)
		}
		rel, err := u.check(ctx, pushed)
		if err == nil && rel != nil {
			switch {
			case failed[bundle{rel.Record.Infohash, rel.Record.Manifest}]:
				u.log.Debug("skipping a release refused before", "version", rel.Version)
				rel = nil
			case mode == NotifyOnly:
				done()
				return rel, nil
			default:
				var got *Release
				failure = "could not install a new release"
				// The record the check verified is installed: one
				// lookup a release.
				got, err = u.apply(ctx, true)
				if err == nil && got != nil {
					done()
					return got, nil
				}
				if got != nil && failedBundle(err) {
					failed[bundle{got.Record.Infohash, got.Record.Manifest}] = true
				}
			}
		}
		done()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, ErrPermission) || errors.Is(err, ErrManaged) {
			// Retrying cannot mend it: the program's user or installer
			// must.
			return nil, err
		}
		failedCheck := false
		switch {
		case pushed && (rel == nil || errors.Is(err, relay.ErrNotHeld) || errors.Is(err, record.ErrThreshold)):
			// The packets held name no new release for this program:
			// the DHT is checked when it was due.
			u.log.Debug("a peer's packet named no new release", "err", err)
		case err == nil:
			lastLogged = ""
		case errors.Is(err, ErrHeldBack):
			// Nothing to do yet: the provider widens the rollout, or a
			// newer release comes.
			if msg := err.Error(); msg != lastLogged {
				u.log.Info("a new release is not yet rolled out to this machine", "err", err)
				lastLogged = msg
			}
		case errors.Is(err, dht.ErrNotFound) || errors.Is(err, record.ErrNoRelease):
			// An answer, not a failure: checked again at the interval.
			if lastLogged != "nothing published" {
				u.log.Info("nothing published on this channel yet", "channel", u.cfg.Channel, "err", err)
				lastLogged = "nothing published"
			}
		case refused(err):
			if msg := err.Error(); msg != lastLogged {
				u.log.Warn("refused a release", "err", err)
				lastLogged = msg
			} else {
				u.log.Debug("refused a release", "err", err)
			}
		default:
			failedCheck = true
		}
		if failedCheck || !pushed {
			// A check a peer's packet woke leaves the DHT's schedule as
			// it was; a peer that would tell of news puts it off
			// (relay.PushBackoff).
			wait := checks.Next(failedCheck)
			next = time.Now().Add(wait)
			if pw != nil {
				pw.Schedule(wait, !failedCheck)
			}
			if failedCheck {
				u.log.Info(failure, "err", err, "retry", wait)
			}
		}
		if pw == nil {
			if !backoff.Sleep(ctx, time.Until(next)) {
				return nil, ctx.Err()
			}
			continue
		}
		if pushed, err = pw.Wait(ctx); err != nil {
			return nil, err
		}
	}
}

// refused reports whether err refuses a release, as opposed to failing to
// reach it.
func refused(err error) bool {
	return record.IsVerification(err) || errors.Is(err, ErrNoExecutable) || errors.Is(err, ErrHealthCheck) || errors.Is(err, ErrRolledBack)
}

// failedBundle reports whether err refuses a release for its bundle, which
// is the same at every try.
func failedBundle(err error) bool {
	for _, e := range []error{record.ErrManifestMismatch, record.ErrFileMismatch, ErrNoExecutable, ErrHealthCheck} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// serve opens the client Run checks and serves through, and serves the
// release the data folder holds (Config.NoServe). Where that fails (the
// data folder is in use by another run of the program, say) Run goes on
// without serving. stop closes the client.
func (u *Updater) serve(ctx context.Context) (stop func()) {
	c, err := u.open(ctx, false)
	if err != nil {
		u.log.Info("not serving the installed release", "err", err)
		return func() {}
	}
	b, err := c.Serve(ctx, u.cfg.Key, u.cfg.Channel)
	switch {
	case err != nil:
		u.log.Info("not serving the installed release", "err", err)
	case b != nil:
		u.log.Debug("serving the installed release", "version", b.Manifest.Version, "infohash", b.Infohash)
	}
	return u.shareClient(c)
}

// share opens a client that Check and Apply share until done is called:
// for a Run that does not serve, one check and the update that follows
// it. Where it cannot, each opens its own.
func (u *Updater) share(ctx context.Context) (done func()) {
	c, err := u.open(ctx, true)
	if err != nil {
		return func() {}
	}
	return u.shareClient(c)
}

// shareClient makes c the client Check and Apply use, until done, which
// closes it.
func (u *Updater) shareClient(c *relay.Client) (done func()) {
	u.mu.Lock()
	u.serving = c
	u.mu.Unlock()
	return func() {
		u.mu.Lock()
		u.serving = nil
		u.mu.Unlock()
		c.Close()
	}
}
