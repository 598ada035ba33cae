package transfer

import (
	"context"
	"maps"
	"net"
	"net/netip"
	"time"

	"github.com/relay-sh/relay/internal/peerwire"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
)

// What swarm.go does for the torrent library's engine, capSeeds and
// shares, is not done on the wire engine, and that is a choice, not a
// gap that peerwire's request policy closes. A peerwire download keeps up
// to min(reqq, Config.Requests) blocks queued at a peer (250 at a peerwire
// or libtorrent seed: 4 MiB, 16 pieces of 256 KiB), and starts the rarest
// piece, the lowest index among equals, which every fetcher of a new
// release shares: a fleet's fetchers would all queue the same pieces at
// the publisher's seed, as the library's fetchers did before capSeeds.
// But both remedies bind only fetchers that are relay's and polite; the
// seed's upload is better bounded where it is spent, at the seed, whoever
// fetches: initial seeding (BEP 16, Config.InitialSeeding, wireseed.go)
// offers each peer one piece at a time, so no fetcher can queue more at
// the seed than that piece, and each piece leaves it about once.
// Config.SeedRequests has no effect on the wire engine.

// wireFleet is what a bundle of the wire engine keeps for relay_record
// (the key of its swarm), a fleet's quiet serving (Serve, see
// announceShare) and Reach. Its fields are under the wireClient's mu.
type wireFleet struct {
	key        signer.PublicKey // its publisher's key, once known: seeded, or fetched (FetchRequest.Key)
	quiet      bool             // served as one of a fleet (Serve)
	fetchedAt  time.Time        // when its last fetch started
	got        int64            // the bytes downloaded at the last look (starved)
	progressAt time.Time        // when got last grew
	reach      reachBook        // its peers and how far they were reached
}

// hook sets the parts of the peerwire configuration that relay_record
// and Reach need: the extension, when Config.OnRecord is set; dials that
// note how they went; connections noted in their bundle's Reach. It
// starts the Client's relay_record loop.
func (w *wireClient) hook(pc *peerwire.Config) {
	c := w.c
	if c.cfg.OnRecord != nil {
		pc.Extensions = append(pc.Extensions, w.recordExtension())
	}
	dial := pc.Dial
	pc.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
		c.noteDial(addr, Dialing, nil)
		conn, err := dial(ctx, addr)
		if err != nil {
			c.noteDial(addr, DialFailed, err)
		} else {
			c.noteDial(addr, Dialed, nil)
		}
		return conn, err
	}
	pc.OnConnect = w.onConnect
	w.wg.Go(func() { c.recordLoop(c.ctx) })
}

// onConnect notes a BitTorrent connection to a bundle's peer for Reach.
func (w *wireClient) onConnect(p *peerwire.Peer) {
	ap, err := netip.ParseAddrPort(p.Addr())
	if err != nil {
		return
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	w.mu.Lock()
	defer w.mu.Unlock()
	if b := w.bundles[record.Infohash(p.Torrent().Infohash())]; b != nil {
		b.fleet.reach.note(PeerReach{Addr: ap, Incoming: !p.Dialed(), State: Connected})
	}
}

// reach is Reach on the wire engine.
func (w *wireClient) reach(ih record.Infohash) (peers []PeerReach, more int, ok bool) {
	w.mu.Lock()
	b := w.bundles[ih]
	if b == nil {
		w.mu.Unlock()
		return nil, 0, false
	}
	book := reachBook{peers: maps.Clone(b.fleet.reach.peers), more: b.fleet.reach.more}
	w.mu.Unlock()
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	peers, more = w.c.reachOf(&book)
	return peers, more, true
}

func (b *wireBundle) bundleKey() signer.PublicKey {
	b.w.mu.Lock()
	defer b.w.mu.Unlock()
	return b.fleet.key
}

// starved reports whether the bundle's running fetch, started at least
// swarmWait ago, has received nothing for swarmWait. Unlike the torrent
// library's engine, which notes each peer's last block, it looks at the
// bytes the torrent downloaded (web seeds' included), so it learns of
// progress when it looks: announceQuiet does so every second while a
// fetch runs.
func (b *wireBundle) starved() bool {
	w := b.w
	w.mu.Lock()
	t, since := b.t, b.fleet.fetchedAt
	w.mu.Unlock()
	var got int64
	if t != nil {
		got = t.Stats().Downloaded
	}
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	f := &b.fleet
	if got != f.got {
		f.got, f.progressAt = got, now
	}
	return now.Sub(since) >= swarmWait && now.Sub(f.progressAt) >= swarmWait
}
