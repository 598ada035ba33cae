package interop

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"

	"github.com/relay-sh/relay/dht/localnet"
	"github.com/relay-sh/relay/internal/peerwire"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/transfer"
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

// peerwireBundle makes a bundle of files of the given sizes with relay
// (transfer.Make, pieces of 64 KiB) in a new data folder, published by
// key, and returns it with its info's bytes and the data folder.
func peerwireBundle(t *testing.T, key *signer.PrivateKey, sizes ...int) (*transfer.Bundle, []byte, string) {
	t.Helper()
	dataDir := t.TempDir()
	b, err := transfer.Make(context.Background(), transfer.MakeOptions{
		Dir:         transfer.BundlesDir(dataDir),
		Sources:     []transfer.Source{{Path: releaseDir(t, sizes...)}},
		Key:         key.PublicKey(),
		Version:     record.MustParseVersion("1.0.0"),
		Published:   time.Now(),
		PieceLength: 64 << 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	mi, err := metainfo.LoadFromFile(filepath.Join(filepath.Dir(b.Dir), b.Name+".torrent"))
	if err != nil {
		t.Fatal(err)
	}
	return b, mi.InfoBytes, dataDir
}

// TestTransferFetchesFromPeerwire: relay's transfer client (on its
// default engine, the torrent library's) fetches and verifies a bundle
// that only internal/peerwire serves, info included.
func TestTransferFetchesFromPeerwire(t *testing.T) {
	t.Parallel()
	b, infoBytes, _ := peerwireBundle(t, newKey(t), 2<<20+777, 1<<20)
	info, err := peerwire.ParseInfo(infoBytes)
	if err != nil {
		t.Fatal(err)
	}
	files, err := peerwire.OpenFiles(filepath.Dir(b.Dir), info)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { files.Close() })
	c := peerwire.New(peerwire.Config{})
	tor, err := c.Add(infoBytes, files, peerwire.TorrentOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := tor.Check(context.Background()); err != nil || n != tor.Stats().Total {
		t.Fatalf("Check: %d pieces, %v", n, err)
	}
	addr := peerwireServe(t, c)
	ctx := ctxFor(t, 2*time.Minute)
	l, err := transfer.NewClient(transfer.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", Recheck: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	res, err := l.Fetch(ctx, transfer.FetchRequest{
		Key:     b.Manifest.Key,
		Release: b.Release(time.Now().Add(time.Hour)),
		Peers:   []netip.AddrPort{netip.MustParseAddrPort(addr)},
	})
	if err != nil {
		t.Fatal(err)
	}
	sameTree(t, b.Dir, res.Bundle.Dir)
	if st := tor.Stats(); st.Peers > 1 {
		t.Errorf("%d peers connected, want the one", st.Peers)
	}
}

// peerwireServe runs c.Serve on a new listener on 127.0.0.1 until the
// test ends, and returns its address.
func peerwireServe(t *testing.T, c *peerwire.Client) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// TestPeerwireRelayRecord: internal/peerwire speaks relay_record
// (docs/spec/relay-record.md) both ways with relay's transfer client on
// its default engine (the torrent library's): the seeder sends the packet
// it holds of the bundle's key once peerwire's handshake lists the
// extension, and takes the newer one peerwire sends back.
func TestPeerwireRelayRecord(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	b, infoBytes, dataDir := peerwireBundle(t, key, 200<<10)
	packet := func(seq int64) *record.SignedPacket {
		t.Helper()
		pk, err := record.SetRelease(key.PublicKey(), nil, b.Release(time.Now().Add(time.Hour)))
		if err != nil {
			t.Fatal(err)
		}
		p, err := record.Sign(key, seq, pk)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	heard := make(chan *record.SignedPacket, 4)
	s, err := transfer.NewClient(transfer.Config{
		DataDir: dataDir, Listen: "127.0.0.1:0", Recheck: -1,
		OnRecord: func(p *record.SignedPacket) { heard <- p },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Seed(context.Background(), b.Infohash); err != nil {
		t.Fatal(err)
	}
	s.ShareRecord(packet(100))

	got := make(chan []byte, 4)
	newer := packet(200)
	c := peerwire.New(peerwire.Config{Extensions: []peerwire.Extension{{
		Name:    string(transfer.RecordExtension),
		MaxSize: transfer.MaxRecordMessage,
		OnMessage: func(p *peerwire.Peer, payload []byte) {
			got <- append([]byte(nil), payload...)
			// Sent back only now: a peer that sent a newer packet first
			// would not be sent the older one (relay-record.md).
			if err := p.SendExtended(string(transfer.RecordExtension), transfer.EncodeRecord(newer)); err != nil {
				t.Error(err)
			}
		},
	}}})
	info, err := peerwire.ParseInfo(infoBytes)
	if err != nil {
		t.Fatal(err)
	}
	files, err := peerwire.CreateFiles(t.TempDir(), info)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { files.Close() })
	tor, err := c.Add(infoBytes, files, peerwire.TorrentOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t, time.Minute)
	conn, cancel := context.WithCancel(ctx)
	ended := make(chan error, 1)
	go func() { ended <- tor.Connect(conn, s.Addr().String()) }()
	defer func() { cancel(); <-ended }()
	select {
	case payload := <-got:
		p, err := transfer.DecodeRecord(payload)
		if err != nil {
			t.Fatal(err)
		}
		if p.Key != key.PublicKey() || p.Seq != 100 {
			t.Errorf("got the packet of %s seq %d, want seq 100", p.Key, p.Seq)
		}
	case <-ctx.Done():
		t.Fatal("no relay_record message from the seeder")
	}
	select {
	case p := <-heard:
		if p.Seq != newer.Seq {
			t.Errorf("the seeder heard seq %d, want %d", p.Seq, newer.Seq)
		}
	case <-ctx.Done():
		t.Fatal("the seeder heard no relay_record message")
	}
}
