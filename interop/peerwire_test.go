package interop

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"

	"github.com/relay-sh/relay/dht/localnet"
	"github.com/relay-sh/relay/internal/peerwire"
)

// TestPeerwireFetchesFromTransmission: relay's own BitTorrent peer
// (internal/peerwire) fetches the info and every piece of a 20 MB bundle
// that only Transmission seeds (it rejects requests past its 511th queued,
// BEP 6), and has the bundle's bytes.
func TestPeerwireFetchesFromTransmission(t *testing.T) {
	needTransmission(t)
	t.Parallel()
	peerwireFetchesFrom(t, transmissionSeeds, 20<<20, 4321)
}

// TestPeerwireFetchesFromAria2: the same with aria2 seeding.
func TestPeerwireFetchesFromAria2(t *testing.T) {
	needAria2(t)
	t.Parallel()
	peerwireFetchesFrom(t, func(t *testing.T, ctx context.Context, ln *localnet.Net, dir, torrent string) int {
		_, port := aria2(t, ctx, ln, dir, false, "--check-integrity=true", "--seed-ratio=0.0", torrent)
		return port
	}, 3<<20, 4321)
}

// peerwireFetchesFrom publishes a bundle of files of the given sizes with
// relay, stops the publisher, has seed start another client seeding a
// copy, and fetches it from that client alone with internal/peerwire.
func peerwireFetchesFrom(t *testing.T, seed func(t *testing.T, ctx context.Context, ln *localnet.Net, dir, torrent string) int, sizes ...int) {
	ln := localnet.ForTest(t, localnet.Config{Nodes: 4})
	ctx := ctxFor(t, 2*time.Minute)
	p, pub := relaySeeds(t, ctx, ln, newKey(t), releaseDir(t, sizes...))
	seedDir := t.TempDir()
	if err := os.CopyFS(filepath.Join(seedDir, p.Bundle.Name), os.DirFS(p.Bundle.Dir)); err != nil {
		t.Fatal(err)
	}
	mi, err := metainfo.LoadFromFile(filepath.Join(filepath.Dir(p.Bundle.Dir), p.Bundle.Name+".torrent"))
	if err != nil {
		t.Fatal(err)
	}
	torrent := filepath.Join(t.TempDir(), "bundle.torrent")
	if err := mi.Write(mustCreate(t, torrent)); err != nil {
		t.Fatal(err)
	}
	pub.Close()
	addr := "127.0.0.1:" + strconv.Itoa(seed(t, ctx, ln, seedDir, torrent))

	c := peerwire.New(peerwire.Config{})
	var info []byte
	// The seeder may not listen yet: FetchInfo fails at once on a refused
	// connection, and is asked again.
	for {
		if info, err = c.FetchInfo(ctx, metainfo.Hash(p.Bundle.Infohash), []string{addr}, nil); err == nil || errors.Is(err, peerwire.ErrBadInfo) || ctx.Err() != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := peerwire.ParseInfo(info)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	files, err := peerwire.CreateFiles(out, parsed)
	if err != nil {
		t.Fatal(err)
	}
	defer files.Close()
	tor, err := c.Add(info, files, peerwire.TorrentOptions{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := tor.Download(ctx, peerwire.DownloadOptions{Peers: []string{addr}}); err != nil {
		t.Fatal(err)
	}
	t.Logf("peerwire fetched %d bytes in %v", tor.Length(), time.Since(start))
	sameTree(t, p.Bundle.Dir, filepath.Join(out, p.Bundle.Name))
}

func mustCreate(t *testing.T, p string) *os.File {
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
