// Package backoff times the checks of relay's long-running loops (watch,
// seed, update): a jittered interval after a check that got an answer, and
// after failures a wait that starts short and doubles up to the interval,
// each jittered by up to a half either way.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// First is the wait after the first failure in a row.
const First = 5 * time.Second

// Checks times a loop's checks. The zero value is not usable: set Interval.
type Checks struct {
	// Interval is the time between checks that succeed.
	Interval time.Duration
	failures int
}

// Next returns the wait before the next check, after one that failed or
// not. A success waits Interval; the n-th failure in a row waits
// First·2ⁿ⁻¹, at most Interval. Every wait is jittered (Jitter), so that a
// fleet started together, or cut off together, does not ask the network
// together.
func (c *Checks) Next(failed bool) time.Duration {
	if !failed {
		c.failures = 0
		return Jitter(c.Interval)
	}
	c.failures++
	return Jitter(min(c.Interval, First<<min(c.failures-1, 20)))
}

// Jitter returns d times a factor drawn uniformly from [0.5, 1.5): the
// mean wait is d, and the checks of machines that started together are
// spread over a whole interval after one wait.
func Jitter(d time.Duration) time.Duration {
	return time.Duration((0.5 + rand.Float64()) * float64(d))
}

// Sleep waits d, and reports false if ctx ended first.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
