package transfer

import (
	"github.com/anacrolix/torrent/metainfo"

	"github.com/relay-sh/relay/internal/peerwire"
	"github.com/relay-sh/relay/record"
)

// Initial seeding on the wire engine (peerwire's TorrentOptions.
// InitialSeeding, BEP 16), with Config.InitialSeeding: a bundle is served so when a Seed (not a
// fleet's quiet Serve) is what first gives the client its torrent, that
// is when the client holds the whole bundle before any fetch of it this
// session: the publisher's seed of a release it made, or `relay seed`
// serving the bundles on its disk. Those are the bundles few peers hold
// whole yet, whose one uploader every fetcher of a new release would
// otherwise queue the same pieces at. A bundle the client fetched, and a
// fleet's Serve of one (whose peers are many and hold it whole), is
// served normally. The torrent's mode is set when it is added to the
// peerwire.Client and lasts while the client holds the bundle: peerwire
// has no way to leave initial seeding on a running torrent, and it needs
// none, since a peer that lacks a piece no other peer connected has is
// offered its next one without waiting (a late lone fetcher is not held
// back).
//
// It is not the default: peerwire's initial seeding makes a peer that has
// its offer wait (PassOnWait, 10 s) while another connected peer lacks
// that piece, whatever that peer does, so idle connections (transfer's
// TestFetchWhileHostsFloodSeeder: 16-25 of them) held a lone fetch to a
// piece per 10 s and it did not complete in 60 s; and a fetch of one
// platform's files (TestFetchPlatform) waits through every offer of a
// piece it does not want (declineWait, 2 s each) before it is offered
// one it does, and did not complete in 30 s.
//
// The pieces of relay.json are open (TorrentOptions.OpenPieces): told of
// to every peer and served to any, as a fetch wants them before any
// other.

// seedOptions sets initial seeding in o for bundle b with info if it
// is served so (see above).
func (w *wireClient) seedOptions(b *wireBundle, info *metainfo.Info, o *peerwire.TorrentOptions) {
	w.mu.Lock()
	first := w.c.cfg.InitialSeeding && b.seeding && !b.fleet.quiet
	w.mu.Unlock()
	j, ok := filesByPath(info)[record.ManifestName]
	if !first || !ok {
		return
	}
	_, lo, hi := filePieces(info, j)
	o.InitialSeeding = true
	o.OpenPieces = func(i int) bool { return i >= lo && i < hi }
}
