package httprelay

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// clients limits the requests of each client address (an IPv4 address,
// an IPv6 /64) with a token bucket each, in a map of at most max
// addresses: when it is full, buckets that have refilled leave it, and
// while none has, every new address shares one bucket.
type clients struct {
	rate  rate.Limit
	burst int
	max   int

	mu       sync.Mutex
	m        map[netip.Prefix]*rate.Limiter
	overflow *rate.Limiter
	swept    time.Time
}

func newClients(r rate.Limit, burst, max int) *clients {
	return &clients{rate: r, burst: burst, max: max, m: make(map[netip.Prefix]*rate.Limiter), overflow: rate.NewLimiter(r, burst)}
}

// clientOf returns who a request's remote address ("ip:port") counts as.
func clientOf(remote string) netip.Prefix {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Prefix{}
	}
	a = a.Unmap().WithZone("")
	bits := a.BitLen()
	if a.Is6() && !a.IsLoopback() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// allow reports whether client may make a request at now; if not, how
// long until it may.
func (c *clients) allow(client netip.Prefix, now time.Time) (bool, time.Duration) {
	if c.rate == rate.Inf {
		return true, 0
	}
	c.mu.Lock()
	l := c.m[client]
	if l == nil {
		if len(c.m) >= c.max && now.Sub(c.swept) >= time.Second {
			for k, v := range c.m {
				if v.TokensAt(now) >= float64(c.burst) {
					delete(c.m, k)
				}
			}
			c.swept = now
		}
		if len(c.m) < c.max {
			l = rate.NewLimiter(c.rate, c.burst)
			c.m[client] = l
		} else {
			l = c.overflow
		}
	}
	c.mu.Unlock()
	r := l.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}
