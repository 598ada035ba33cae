package transfer

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
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
		if k.ih == ih && p.told && !p.seed {
			fetchers++
		}
	}
	capped := limit > 0 && fetchers >= 2
	for k, p := range c.peerBits {
		if k.ih != ih || !p.seed {
			continue
		}
		switch {
		case capped && p.limit == 0:
			p.limit = max(1, k.pc.PeerMaxRequests)
			k.pc.PeerMaxRequests = min(p.limit, limit)
			p.got, p.since, p.queue = 0, time.Now(), max(p.queue, k.pc.PeerMaxRequests)
		case !capped && p.limit != 0:
			k.pc.PeerMaxRequests = p.limit
			p.limit = 0
		}
	}
}

// onExtendedHandshake sets the queue kept at a peer from its extended
// handshake, which carries its own request limit ("reqq"): one below it
// (queueLimit), and no more than the peer took before (learnLimit). And
// it keeps a cap capSeeds set when the handshake comes after the message
// that showed the peer to be a seed.
func (c *Client) onExtendedHandshake(pc *torrent.PeerConn, m *pp.ExtendedHandshakeMessage) {
	k, ok := keyOf(pc)
	if !ok || m.Reqq <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	m.Reqq = queueLimit(m.Reqq)
	if n := c.learntLimit(k.ih, pc.PeerID); n > 0 {
		m.Reqq = min(m.Reqq, n)
	}
	if p := c.peerBits[k]; p != nil && p.limit != 0 {
		p.limit = m.Reqq
		m.Reqq = min(m.Reqq, pc.PeerMaxRequests)
	}
}

// onBlock counts the n bytes of a block a peer sent and, every
// seedQueueTime, sets the queue at a capped seed to what it delivered in
// that time, between SeedRequests and the seed's own limit. It runs with
// the torrent client locked.
func (c *Client) onBlock(pc *torrent.PeerConn, n int) {
	c.withPeer(pc, func(_ peerKey, p *peerPieces) { c.block(pc, p, n) })
}

// block is onBlock with c.mu held.
func (c *Client) block(pc *torrent.PeerConn, p *peerPieces, n int) {
	now := time.Now()
	p.lastBlock = now
	p.queued = max(0, p.queued-1)
	if p.limit == 0 {
		return
	}
	p.got += int64(n)
	if elapsed := now.Sub(p.since); elapsed >= seedQueueTime {
		blocks := int(p.got * int64(seedQueueTime) / int64(elapsed) / blockSize)
		pc.PeerMaxRequests = min(p.limit, max(c.seedRequests(), blocks))
		p.got, p.since, p.queue = 0, now, max(p.queue, pc.PeerMaxRequests)
	}
}

// seedRequests is Config.SeedRequests with its default.
func (c *Client) seedRequests() int {
	if c.cfg.SeedRequests == 0 {
		return DefaultSeedRequests
	}
	return c.cfg.SeedRequests
}

// peerIDPrefix starts the BitTorrent peer IDs of relay's clients (BEP 20
// style), so that relay fetchers know each other in a swarm (see shares).
const peerIDPrefix = "-RL0001-"

// sharePlan is how often a fetch looks again at the relay fetchers it
// shares seeds with.
const sharePlan = 100 * time.Millisecond

// shares divides what relay fetchers take from a seed among them. When a
// release goes out, many watchers fetch it at once from the publisher's
// seed, whose upload is what they all wait on: ideally it sends each piece
// once, to one of them, and they pass it on to each other (the scheme of
// the Kumar-Ross bound). Each fetcher picking at random among the rarest
// pieces it lacks (the torrent library's rule) has two of them take the
// same piece from the seed now and then: a piece is rare until someone
// has all of it, not while someone is fetching it.
//
// So the relay fetchers of a bundle split its pieces without a word
// between them: each sorts the peer IDs of the relay fetchers it knows of,
// its own among them, and piece i is the share of the one at i modulo
// their number. A fetcher asks for its share before other pieces (high
// priority), from any peer; the rest it asks for as before. In
// BenchmarkSwarm16 the seed sent 1.10-1.15 copies of the bundle instead of
// 1.15-1.22, and the swarm finished 3-4% sooner. What is left is mostly at
// the end: a fetcher that has its share and finds nothing else to take
// from the other fetchers asks the seed for what they are still taking,
// and the library gives no way to ask one peer and not another for a
// piece. Fetchers that see different sets of peers only order their
// requests differently; each still fetches everything.
//
// Shares apply once a seed and two other relay fetchers are connected;
// the set of fetchers known only grows during a fetch (one that completed
// has its share), so the priorities change when a fetcher joins, not each
// time one finishes.
type shares struct {
	f      *fetch
	pieces []int // the pieces of the wanted files
	known  map[torrent.PeerID]bool
	high   []bool // per piece of pieces: set to high priority
	active bool
}

// newShares returns the shares of a fetch of the files j of info.
func newShares(f *fetch, info *metainfo.Info, files []int) *shares {
	seen := make(map[int]bool)
	var pieces []int
	for _, j := range files {
		_, first, end := filePieces(info, j)
		for i := first; i < end; i++ {
			if !seen[i] {
				seen[i] = true
				pieces = append(pieces, i)
			}
		}
	}
	slices.Sort(pieces)
	return &shares{f: f, pieces: pieces, known: make(map[torrent.PeerID]bool), high: make([]bool, len(pieces))}
}

// run plans the shares every sharePlan until ctx ends.
func (s *shares) run(ctx context.Context) {
	tick := time.NewTicker(sharePlan)
	defer tick.Stop()
	for {
		s.plan()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// relayFetchers returns the peer IDs of the relay peers connected for
// bundle ih that do not hold all of it, and whether a peer that does (a
// seed) is connected.
func (c *Client) relayFetchers(ih record.Infohash) (ids []torrent.PeerID, seed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, p := range c.peerBits {
		switch {
		case k.ih != ih || !p.told:
		case p.seed:
			seed = true
		case strings.HasPrefix(string(k.pc.PeerID[:]), peerIDPrefix[:3]):
			ids = append(ids, k.pc.PeerID)
		}
	}
	return ids, seed
}

// plan sets the priorities of the pieces by the shares, once they apply
// and whenever the set of fetchers known grew.
func (s *shares) plan() {
	ids, seed := s.f.c.relayFetchers(s.f.ih)
	grew := false
	for _, id := range ids {
		if !s.known[id] {
			s.known[id] = true
			grew = true
		}
	}
	if s.active && !grew || !s.active && (!seed || len(s.known) < 2) {
		return
	}
	self := s.f.c.cl.PeerID()
	all := []torrent.PeerID{self}
	for id := range s.known {
		if id != self {
			all = append(all, id)
		}
	}
	slices.SortFunc(all, func(a, b torrent.PeerID) int { return bytes.Compare(a[:], b[:]) })
	rank := slices.Index(all, self)
	complete, _, _, _ := s.f.c.store.view(s.f.ih)
	s.f.c.mu.Lock()
	s.f.a.share = [2]int{rank, len(all)}
	s.f.c.mu.Unlock()
	s.f.c.log.Debug("sharing the pieces taken from seeds", "infohash", s.f.ih, "share", rank, "fetchers", len(all))

	s.f.prioMu.Lock()
	defer s.f.prioMu.Unlock()
	first := !s.active
	s.active = true
	s.f.shared.Store(true)
	for j, i := range s.pieces {
		mine := i%len(all) == rank
		if mine == s.high[j] && !first || i < len(complete) && complete[i] {
			continue
		}
		// Not high: the file's normal priority, whatever streamFile
		// raised it to before.
		prio := torrent.PiecePriorityNone
		if mine {
			prio = torrent.PiecePriorityHigh
		}
		s.f.a.t.Piece(i).SetPriority(prio)
		s.high[j] = mine
	}
}
