package relay

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/transfer"
)

// DefaultStallTimeout is how long a download may make no progress before
// Fetch ends it, when FetchOptions.StallTimeout is zero.
const DefaultStallTimeout = 2 * time.Minute

// ErrStalled is returned by Fetch for a download that made no progress (no
// new data, no next stage) for FetchOptions.StallTimeout: nobody serves
// the release, or nobody reachable. Nothing was placed or accepted; the
// next Fetch tries again, or fetches a newer release if there is one.
var ErrStalled = errors.New("download stalled")

// errSuperseded ends the download of a release when a newer one of the
// channel was found meanwhile (FetchOptions.Recheck).
var errSuperseded = errors.New("superseded by a newer release")

// Waiting says what a download that made no progress for a while waits
// for (FetchOptions.OnWaiting).
type Waiting struct {
	// Release is the release being downloaded.
	Release record.Release
	// Stage is the step the download is at.
	Stage transfer.Stage
	// Known and Connected count the bundle's peers: known (from the DHT,
	// web seeds, peer exchange) and connected now.
	Known, Connected int
	// For is how long the download has made no progress.
	For time.Duration
}

// String says what w waits for: "for peers: 0 known, 0 connected" while
// no peer has given the bundle's info, "for data: ..." after.
func (w Waiting) String() string {
	what := "peers"
	if w.Stage != transfer.StageInfo {
		what = "data"
	}
	return fmt.Sprintf("for %s: %d known, %d connected", what, w.Known, w.Connected)
}

// stallGuard follows one download's progress.
type stallGuard struct {
	mu      sync.Mutex
	p       transfer.Progress
	last    time.Time // when it last made progress
	noticed bool      // OnWaiting was called since then
}

func (g *stallGuard) progress(p transfer.Progress) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if p.Done != g.p.Done || p.Stage != g.p.Stage {
		g.last, g.noticed = time.Now(), false
	}
	g.p = p
}

// waiting returns what the download waits for, and whether it has waited
// long enough to say so (notice) for the first time since its last
// progress.
func (g *stallGuard) waiting(r record.Release, notice time.Duration) (Waiting, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	w := Waiting{Release: r, Stage: g.p.Stage, Known: g.p.Known, Connected: g.p.Peers, For: time.Since(g.last)}
	first := w.For >= notice && !g.noticed
	if first {
		g.noticed = true
	}
	return w, first
}

// guardedFetch runs download, the fetch of release r, so that it never
// waits forever: it ends it with ErrStalled after o.StallTimeout without
// progress, tells o.OnWaiting what it waits for once it has made no
// progress for a while, and, with o.Recheck, resolves the channel again
// meanwhile and ends it with errSuperseded when a newer release passes
// the record checks (against floor, with policy). Timing is the real
// clock's, whatever Config.Now says.
func (c *Client) guardedFetch(ctx context.Context, o FetchOptions, r record.Release, floor record.Accepted, policy record.Policy,
	download func(ctx context.Context, progress func(transfer.Progress)) (*transfer.Fetched, error)) (*transfer.Fetched, error) {
	timeout := o.StallTimeout
	if timeout <= 0 {
		timeout = DefaultStallTimeout
	}
	notice := min(10*time.Second, timeout/2)
	g := &stallGuard{last: time.Now()}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	every(ctx, &wg, min(time.Second, notice/2), func() bool {
		w, first := g.waiting(r, notice)
		if w.For >= timeout {
			cancel(fmt.Errorf("%w: no progress for %s, waiting %s", ErrStalled, timeout, w))
			return false
		}
		if first && o.OnWaiting != nil {
			o.OnWaiting(w)
		}
		return true
	})
	if o.Recheck > 0 {
		every(ctx, &wg, o.Recheck, func() bool {
			policy.Now = c.now()
			if chk, err := c.checkRelease(ctx, o.Key, r.Channel, floor, policy, false, false); err == nil && chk.Release.Version.Compare(r.Version) > 0 {
				cancel(fmt.Errorf("%w: %s while %s downloaded", errSuperseded, chk.Release.Version, r.Version))
				return false
			}
			return true
		})
	}
	f, err := download(ctx, func(p transfer.Progress) {
		g.progress(p)
		if o.Progress != nil {
			o.Progress(p)
		}
	})
	if cause := context.Cause(ctx); err != nil && (errors.Is(cause, ErrStalled) || errors.Is(cause, errSuperseded)) {
		return nil, cause
	}
	return f, err
}

// every calls fn every d in a goroutine counted by wg, until fn returns
// false or ctx ends.
func every(ctx context.Context, wg *sync.WaitGroup, d time.Duration, fn func() bool) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if !fn() {
				return
			}
		}
	}()
}
