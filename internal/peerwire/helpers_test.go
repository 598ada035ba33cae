package peerwire

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	alog "github.com/anacrolix/log"
	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	pp "github.com/anacrolix/torrent/peer_protocol"
	"github.com/anacrolix/torrent/storage"
	"golang.org/x/time/rate"

	"github.com/relay-sh/relay/record"
)

// writeRandom writes a file of size pseudo-random bytes drawn from seed.
func writeRandom(t testing.TB, p string, size int64, seed uint64) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16)})
	buf := make([]byte, 1<<20)
	for size > 0 {
		n := min(int64(len(buf)), size)
		r.Read(buf[:n])
		if _, err := f.Write(buf[:n]); err != nil {
			t.Fatal(err)
		}
		size -= n
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// bundle is a torrent made for a test, laid out as relay lays out a
// bundle's files (root/<name>/<path...>, its metainfo at
// root/<name>.torrent): its infohash, info bytes, and the folder its
// files are under. It is made with the torrent library's metainfo
// package, not relay's transfer package, which imports this one.
type bundle struct {
	Infohash  record.Infohash
	Name      string
	Size      int64
	infoBytes []byte
	info      *metainfo.Info
	root      string // the torrent's files are root/<name>/...
}

// makeBundle makes a torrent of files (name: size) with pieces of
// pieceLen bytes in a new folder.
func makeBundle(t testing.TB, files map[string]int64, pieceLen int64) *bundle {
	t.Helper()
	root := t.TempDir()
	const name = "bundle-1.0.0"
	var seed uint64
	for _, p := range slices.Sorted(maps.Keys(files)) {
		seed++
		writeRandom(t, filepath.Join(root, name, filepath.FromSlash(p)), files[p], seed+uint64(files[p]))
	}
	in := metainfo.Info{PieceLength: pieceLen}
	if err := in.BuildFromFilePath(filepath.Join(root, name)); err != nil {
		t.Fatal(err)
	}
	ib, err := bencode.Marshal(&in)
	if err != nil {
		t.Fatal(err)
	}
	mi := metainfo.MetaInfo{InfoBytes: ib}
	f, err := os.Create(filepath.Join(root, name+".torrent"))
	if err != nil {
		t.Fatal(err)
	}
	if err := mi.Write(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	info, err := ParseInfo(ib)
	if err != nil {
		t.Fatal(err)
	}
	return &bundle{Infohash: record.Infohash(mi.HashInfoBytes()), Name: name, Size: info.TotalLength(), infoBytes: ib, info: info, root: root}
}

// Magnet is the bundle's magnet link.
func (b *bundle) Magnet() string {
	return metainfo.Magnet{InfoHash: metainfo.Hash(b.Infohash), DisplayName: b.Name}.String()
}

// anacrolixSeeds seeds b with the torrent library's client on 127.0.0.1,
// configured as relay's transfer package configures it where that
// matters to a peer (one connection per peer id), until the test ends,
// and returns its address.
func anacrolixSeeds(t testing.TB, b *bundle) string {
	t.Helper()
	cl, err := anacrolixSeeder(b.root, b.infoBytes, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl.ListenAddrs()[0].String()
}

// anacrolixSeeder starts the torrent library's client on 127.0.0.1
// seeding the torrent of infoBytes from the files under root, at most
// upload bytes a second (0: no cap), once it verified them.
func anacrolixSeeder(root string, infoBytes []byte, upload int) (*torrent.Client, error) {
	cfg := anacrolixConfig(root)
	cfg.Seed = true
	cfg.DropMutuallyCompletePeers = false
	cfg.KeepAliveTimeout = 250 * time.Millisecond
	if upload > 0 {
		cfg.UploadRateLimiter = rate.NewLimiter(rate.Limit(upload), 0)
	}
	cl, err := torrent.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	tor, err := cl.AddTorrent(&metainfo.MetaInfo{InfoBytes: infoBytes})
	if err == nil {
		err = tor.VerifyDataContext(context.Background())
	}
	if err == nil && tor.BytesMissing() != 0 {
		err = fmt.Errorf("the seeder has %d bytes missing", tor.BytesMissing())
	}
	if err != nil {
		cl.Close()
		return nil, err
	}
	return cl, nil
}

// anacrolixConfig configures the torrent library's client for a test:
// files under root, TCP on 127.0.0.1 alone, no DHT, trackers or port
// forwarding, one connection per peer id as relay's transfer package has
// it, no log.
func anacrolixConfig(root string) *torrent.ClientConfig {
	cfg := torrent.NewDefaultClientConfig()
	cfg.DataDir = root
	cfg.DefaultStorage = storage.NewFileWithCompletion(root, storage.NewMapPieceCompletion())
	cfg.ListenHost = func(string) string { return "127.0.0.1" }
	cfg.ListenPort = 0
	cfg.NoDHT = true
	cfg.DisableTrackers = true
	cfg.NoDefaultPortForwarding = true
	cfg.DisableWebtorrent = true
	cfg.DisableUTP = true
	cfg.DisableIPv6 = true
	cfg.DropDuplicatePeerIds = true
	cfg.Logger = alog.Default.FilterLevel(alog.Disabled)
	return cfg
}

// ctxFor is a context that ends after d or with the test.
func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// sameFiles fails t unless the torrent's files under got hold b's bytes.
func sameFiles(t testing.TB, b *bundle, got string) {
	t.Helper()
	paths, _, err := layout(b.info)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		want, err := os.ReadFile(filepath.Join(b.root, p))
		if err != nil {
			t.Fatal(err)
		}
		have, err := os.ReadFile(filepath.Join(got, p))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(want, have) {
			t.Fatalf("%s: the %d bytes downloaded differ from the %d seeded", p, len(have), len(want))
		}
	}
}

// serveOn runs c.Serve on a new listener on 127.0.0.1 until the test
// ends, and returns its address.
func serveOn(t testing.TB, c *Client) string {
	return serveWrapped(t, c, func(ln net.Listener) net.Listener { return ln })
}

// serveWrapped is serveOn with the listener wrap returns.
func serveWrapped(t testing.TB, c *Client, wrap func(net.Listener) net.Listener) string {
	return serveAt(t, c, "127.0.0.1:0", wrap)
}

// serveAt is serveWrapped with a listener on laddr.
func serveAt(t testing.TB, c *Client, laddr string, wrap func(net.Listener) net.Listener) string {
	t.Helper()
	l, err := net.Listen("tcp", laddr)
	if err != nil {
		t.Fatal(err)
	}
	ln := wrap(l)
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

// info2hash is the bundle's infohash as the torrent library types it.
func (b *bundle) info2hash() metainfo.Hash { return metainfo.Hash(b.Infohash) }

// leecher fetches b's info from seed with c (it must be the seeded
// info's bytes), and adds the torrent to c with its files in a new
// folder, which it returns.
func leecher(t testing.TB, ctx context.Context, c *Client, b *bundle, seed string) (*Torrent, string) {
	t.Helper()
	info, err := c.FetchInfo(ctx, b.info2hash(), []string{seed}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(info) != string(b.infoBytes) {
		t.Fatal("FetchInfo returned other bytes than the seeded info")
	}
	return addTorrent(t, c, b, info)
}

// addTorrent adds b's torrent to c with its files in a new folder, which
// it returns.
func addTorrent(t testing.TB, c *Client, b *bundle, info []byte) (*Torrent, string) {
	t.Helper()
	dir := t.TempDir()
	files, err := CreateFiles(dir, b.info)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { files.Close() })
	tor, err := c.Add(info, files, TorrentOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tor, dir
}

// halfSeed serves b from a client of its own holding the first half of its
// n pieces (first) or the second, and returns its address.
func halfSeed(t *testing.T, b *bundle, n int, first bool) string {
	t.Helper()
	files, err := OpenFiles(b.root, b.info)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { files.Close() })
	c := New(Config{})
	if _, err := c.Add(b.infoBytes, files, TorrentOptions{Have: func(i int) bool { return (i < n/2) == first }}); err != nil {
		t.Fatal(err)
	}
	return serveOn(t, c)
}

// readMessage reads a message other than a keep-alive (pieces: the
// torrent's number of pieces, 0 when not known).
func readMessage(r *bufio.Reader, pieces int) (pp.MessageType, []byte, error) {
	for {
		typ, n, err := readHeader(r, pieces)
		if err != nil {
			return 0, nil, err
		}
		if n < 0 {
			continue
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return 0, nil, err
		}
		return typ, body, nil
	}
}

// sendHandshake dials addr and sends a handshake for b, with a peer ID of
// its own; the connection closes with the test.
func sendHandshake(t *testing.T, addr string, b *bundle) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	h := handshake{reserved: ourReserved(), infohash: b.info2hash()}
	h.peerID[0] = byte(time.Now().UnixNano())
	conn.Write(h.marshal())
	return conn
}
