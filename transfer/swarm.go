package transfer

import (
	"time"

	"github.com/anacrolix/torrent"
	pp "github.com/anacrolix/torrent/peer_protocol"

	"github.com/relay-sh/relay/record"
)

// DefaultSeedRequests is the fewest requests a fetch keeps queued at a
// seed while other peers fetch the same bundle: four 16 KiB blocks, one
// piece of a bundle of up to 64 MiB (see ChoosePieceLength).
const DefaultSeedRequests = 4

// seedQueueTime is how much of a capped seed's delivery a fetch keeps
// queued at it: the queue grows from SeedRequests to hold what the seed
// sent in this long, so that a seed at the far end of a long round trip
// (up to this long) is not held back by the cap. A seed shared among many
// fetchers delivers each little, and its queue stays short.
const seedQueueTime = 250 * time.Millisecond

// blockSize is the size of the blocks a piece is requested in.
const blockSize = 16 << 10

// capSeeds sets how many requests this client keeps queued at each peer
// holding the whole bundle ih, now that the peers it knows of changed.
//
// A seed, the publisher's most of all, is the scarce upload of a swarm:
// every piece must leave it once, and ideally only once. The torrent
// library asks one peer for up to a thousand blocks at a time, and a seed
// (the library's, relay's) serves the blocks it was asked for in no set
// order. When a release goes out and many watchers fetch it at once, each
// of them then holds a deep queue at the seed spread over dozens of
// pieces; the pieces complete late, so the watchers have little to trade,
// and ask the seed for the same pieces again. With a few requests queued
// at a time, each watcher takes about one piece at a time from the seed,
// chosen when it asks (the rarest it lacks), completes it soon and passes
// it on. Measured (BenchmarkSwarm16, 1 seeder and 16 leechers at equal
// upload caps): the seed sent 1.8 copies of the bundle before, about 1.1
// after.
//
// The cap applies only while two or more other peers that are not seeds
// are connected: alone with a seed, a fetch keeps the library's deep
// queue. And it follows what the seed delivers (onBlock): a queue of a few
// blocks would hold back a fast seed across a long round trip. It runs with the torrent client
// locked (it writes PeerConn fields the library reads under that lock) and
// with c.mu held.
func (c *Client) capSeeds(ih record.Infohash) {
	limit := c.seedRequests()
	fetchers := 0
	for k, p := range c.peerBits {
		if k.ih == ih && !p.seed {
			fetchers++
		}
	}
	capped := limit > 0 && fetchers >= 2
	for k, p := range c.peerBits {
		if k.ih != ih || !p.seed || p.pc == nil {
			continue
		}
		switch {
		case capped && p.limit == 0:
			p.limit = max(1, p.pc.PeerMaxRequests)
			p.pc.PeerMaxRequests = min(p.limit, limit)
			p.got, p.since, p.queue = 0, time.Now(), max(p.queue, p.pc.PeerMaxRequests)
		case !capped && p.limit != 0:
			p.pc.PeerMaxRequests = p.limit
			p.limit = 0
		}
	}
}

// onExtendedHandshake keeps a cap capSeeds set when a peer's extended
// handshake (which carries its own request limit, "reqq") comes after the
// message that showed it to be a seed.
func (c *Client) onExtendedHandshake(pc *torrent.PeerConn, m *pp.ExtendedHandshakeMessage) {
	k, ok := keyOf(pc)
	if !ok || m.Reqq <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.peerBits[k]; p != nil && p.limit != 0 {
		p.limit = m.Reqq
		m.Reqq = min(m.Reqq, p.pc.PeerMaxRequests)
	}
}

// onBlock counts the n bytes of a block a peer sent and, every
// seedQueueTime, sets the queue at a capped seed to what it delivered in
// that time, between SeedRequests and the seed's own limit. It runs with
// the torrent client locked.
func (c *Client) onBlock(pc *torrent.PeerConn, n int) {
	k, ok := keyOf(pc)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.peerBits[k]
	if p == nil || p.limit == 0 {
		return
	}
	p.got += int64(n)
	now := time.Now()
	if elapsed := now.Sub(p.since); elapsed >= seedQueueTime {
		blocks := int(p.got * int64(seedQueueTime) / int64(elapsed) / blockSize)
		p.pc.PeerMaxRequests = min(p.limit, max(c.seedRequests(), blocks))
		p.got, p.since, p.queue = 0, now, max(p.queue, p.pc.PeerMaxRequests)
	}
}

// seedRequests is Config.SeedRequests with its default.
func (c *Client) seedRequests() int {
	if c.cfg.SeedRequests == 0 {
		return DefaultSeedRequests
	}
	return c.cfg.SeedRequests
}
