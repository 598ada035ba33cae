package dht

import (
	"sync"
	"time"
)

// minLookupWait is the least a lookup waits for a node's answer, whatever
// the round trips measured so far: on a loaded machine or a jittery path a
// live node's answer can come a few hundred milliseconds after the usual,
// and a lookup that gave up on live nodes would miss their items.
const minLookupWait = 500 * time.Millisecond

// initialLookupWait is the wait before any round trip is measured,
// RFC 6298's initial retransmission timeout.
const initialLookupWait = time.Second

// rtt estimates the round trip of this node's queries, as TCP does (RFC
// 6298): a smoothed mean and mean deviation of the answered queries' round
// trips, over every node queried. A lookup waits for an answer at most the
// mean plus four deviations: a node slower than that, the slow tail or a
// node that is gone, is given up on so that the lookup goes on without it,
// instead of holding the whole lookup for Config.QueryTimeout.
type rtt struct {
	mu     sync.Mutex
	srtt   time.Duration
	rttvar time.Duration
	n      int
}

// add takes the round trip of one answered query.
func (e *rtt) add(r time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n == 0 {
		e.srtt, e.rttvar = r, r/2
	} else {
		e.rttvar = (3*e.rttvar + (e.srtt - r).Abs()) / 4
		e.srtt = (7*e.srtt + r) / 8
	}
	e.n++
}

// wait returns how long a lookup waits for an answer: the estimate's
// timeout, or initialLookupWait before any answer, held between
// minLookupWait and limit (Config.QueryTimeout).
func (e *rtt) wait(limit time.Duration) time.Duration {
	e.mu.Lock()
	d := initialLookupWait
	if e.n > 0 {
		d = e.srtt + 4*e.rttvar
	}
	e.mu.Unlock()
	return min(max(d, minLookupWait), limit)
}

// minSlotWait is the least a lookup's query keeps its place among the
// alpha in flight (see rtt.slotWait).
const minSlotWait = 100 * time.Millisecond

// slotWait returns how long a lookup's query keeps its place among the
// alpha in flight before the walk asks the next node without it: the mean
// round trip plus one deviation, about the 85th percentile of the answers,
// at least minSlotWait, at most minLookupWait (and limit). The cap keeps
// an estimate swollen by a loaded machine from giving gone nodes their
// places for seconds: on a simulated network of 1,000 nodes at load 15,
// estimates of 1 to 2 s made one resolve in ten take over a second. It is
// much shorter than wait: the query goes on, and its answer is taken when
// it comes, so a slow node loses no more than its turn, while a gone one
// (a third of a routing table's entries can be) holds one of the alpha
// places for about a round trip instead of at least half a second.
func (e *rtt) slotWait(limit time.Duration) time.Duration {
	e.mu.Lock()
	d := initialLookupWait
	if e.n > 0 {
		d = e.srtt + e.rttvar
	}
	e.mu.Unlock()
	return min(max(d, minSlotWait), minLookupWait, limit)
}
