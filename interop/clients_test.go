package interop

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/relay-sh/relay/dht/localnet"
)

// webtorrentResult is what webtorrent.mjs prints.
type webtorrentResult struct {
	WireMs      int64  `json:"wireMs"`
	WireType    string `json:"wireType"`
	FirstByteMs int64  `json:"firstByteMs"`
	DoneMs      int64  `json:"doneMs"`
	Bytes       int64  `json:"bytes"`
}

// needWebtorrent skips t unless node and npm's webtorrent are installed.
func needWebtorrent(t *testing.T) {
	t.Helper()
	needNode(t)
	if !jsPackage("webtorrent") {
		t.Skip("npm's webtorrent is not installed in " + jsDir + ": run npm ci --ignore-scripts there")
	}
}

// TestWebtorrentFetchesFromRelay: webtorrent 3, given a relay seeder's
// address, downloads the bundle from it and has the same bytes; over TCP
// alone, and as webtorrent does by default: uTP first, TCP once uTP fails.
// It logs when webtorrent got its first block. Before relay spoke uTP, the
// default took about 22 s: relay answered each uTP attempt with a reset,
// which webtorrent tries again after 1, 5 and 15 s before it takes TCP.
func TestWebtorrentFetchesFromRelay(t *testing.T) {
	needWebtorrent(t)
	t.Parallel()
	ln := localnet.ForTest(t, localnet.Config{Nodes: 8})
	ctx := ctxFor(t, 2*time.Minute)
	p, seeder := relaySeeds(t, ctx, ln, newKey(t), releaseDir(t, 3<<20, 1234567, 10))
	addr, err := seeder.PeerAddr()
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"tcp", "both"} {
		t.Run(mode, func(t *testing.T) {
			out := t.TempDir()
			var res webtorrentResult
			nodeScriptArgs(t, ctx, &res, []string{"--import", "./nowebrtc.mjs"}, "webtorrent.mjs", "fetch", p.Bundle.Magnet(), addr.String(), out, mode)
			t.Logf("webtorrent (%s): connected over %s after %d ms, first block after %d ms, %d bytes after %d ms", mode, res.WireType, res.WireMs, res.FirstByteMs, res.Bytes, res.DoneMs)
			sameTree(t, p.Bundle.Dir, filepath.Join(out, p.Bundle.Name))
			// A loose bound, for a loaded machine: the target is 2 s.
			if res.FirstByteMs > 10000 {
				t.Errorf("webtorrent got its first block from relay after %d ms", res.FirstByteMs)
			}
		})
	}
}
