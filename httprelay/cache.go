package httprelay

import (
	"container/list"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
)

// entry is what a Server knows of one key: its newest packet (nil when
// the DHT had none), the body it answers, and when it was last read
// from the DHT or stored.
type entry struct {
	key    signer.PublicKey
	packet *record.SignedPacket
	body   []byte
	ttl    time.Duration
	// fresh is when the entry was last read from the DHT or stored; zero
	// asks for a refresh at the next read.
	fresh time.Time
	elem  *list.Element
}

// cache holds the entries of at most max keys; the least recently used
// leaves first. An entry is at most about 1.3 KB.
type cache struct {
	max int
	// minTTL and maxTTL bound how long a packet stays fresh (its
	// records' lowest TTL); absentTTL is how long "the DHT has none"
	// does.
	minTTL, maxTTL, absentTTL time.Duration

	mu  sync.Mutex
	m   map[signer.PublicKey]*entry
	lru list.List // of *entry, most recent first
}

func newCache(max int, minTTL, maxTTL, absentTTL time.Duration) *cache {
	return &cache{max: max, minTTL: minTTL, maxTTL: maxTTL, absentTTL: absentTTL, m: make(map[signer.PublicKey]*entry)}
}

// get returns a copy of key's entry, and whether there is one.
func (c *cache) get(key signer.PublicKey) (entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[key]
	if e == nil {
		return entry{}, false
	}
	c.lru.MoveToFront(e.elem)
	return *e, true
}

// put records what the DHT or a client gave for key at now: p, or
// nothing (p nil). A packet never replaces one with a higher seq, nor
// does nothing replace a packet: a DHT that lost a record does not make
// the relay forget it before its entry is evicted. It returns the entry
// as it is now.
func (c *cache) put(key signer.PublicKey, p *record.SignedPacket, now time.Time) entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[key]
	if e == nil {
		e = &entry{key: key}
		e.elem = c.lru.PushFront(e)
		c.m[key] = e
		for len(c.m) > c.max {
			old := c.lru.Back().Value.(*entry)
			c.lru.Remove(old.elem)
			delete(c.m, old.key)
		}
	} else {
		c.lru.MoveToFront(e.elem)
	}
	switch {
	case p == nil || e.packet != nil && e.packet.Seq > p.Seq:
		// Keep what is there; it is as fresh as the DHT's answer.
	case e.packet == nil || e.packet.Seq != p.Seq || e.packet.Sig != p.Sig:
		e.packet, e.body = p, p.Body()
		e.ttl = min(max(packetTTL(p, c.minTTL), c.minTTL), c.maxTTL)
	}
	if e.packet == nil {
		e.ttl = c.absentTTL
	}
	e.fresh = now
	return *e
}

// stale makes key's entry due for a refresh at its next read.
func (c *cache) stale(key signer.PublicKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.m[key]; e != nil {
		e.fresh = time.Time{}
	}
}

// len returns the number of entries.
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// packetTTL returns the lowest TTL of p's records, or def when it has none
// or does not parse.
func packetTTL(p *record.SignedPacket, def time.Duration) time.Duration {
	var m dns.Msg
	if m.Unpack(p.Packet) != nil || len(m.Answer) == 0 {
		return def
	}
	low := m.Answer[0].Header().Ttl
	for _, rr := range m.Answer[1:] {
		low = min(low, rr.Header().Ttl)
	}
	return time.Duration(low) * time.Second
}
