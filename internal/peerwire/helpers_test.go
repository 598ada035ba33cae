package peerwire

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"

	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/transfer"
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

// bundle is a relay bundle made for a test: its infohash, info bytes, and
// the folder its torrent's files are under.
type bundle struct {
	*transfer.Bundle
	infoBytes []byte
	info      *metainfo.Info
	root      string // the torrent's files are root/<name>/...
	dataDir   string
}

// makeBundle makes a relay bundle of files (name: size) with pieces of
// pieceLen bytes (0: relay's choice) in a new data folder.
func makeBundle(t testing.TB, files map[string]int64, pieceLen int64) *bundle {
	t.Helper()
	src := t.TempDir()
	var seed uint64
	for name, size := range files {
		seed++
		writeRandom(t, filepath.Join(src, name), size, seed+uint64(size))
	}
	k, err := signer.NewPrivateKey(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	b, err := transfer.Make(context.Background(), transfer.MakeOptions{
		Dir:         transfer.BundlesDir(dataDir),
		Sources:     []transfer.Source{{Path: src}},
		Key:         k.PublicKey(),
		Version:     record.MustParseVersion("1.0.0"),
		Published:   time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		PieceLength: pieceLen,
	})
	if err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(src)
	mi, err := metainfo.LoadFromFile(filepath.Join(filepath.Dir(b.Dir), b.Name+".torrent"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := ParseInfo(mi.InfoBytes)
	if err != nil {
		t.Fatal(err)
	}
	return &bundle{Bundle: b, infoBytes: mi.InfoBytes, info: info, root: filepath.Dir(b.Dir), dataDir: dataDir}
}

// anacrolixSeeds seeds b with relay's transfer client (the torrent
// library's) on 127.0.0.1, until the test ends, and returns its address.
func anacrolixSeeds(t testing.TB, b *bundle) string {
	t.Helper()
	c, err := transfer.NewClient(transfer.Config{DataDir: b.dataDir, Listen: "127.0.0.1:0", Recheck: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Seed(context.Background(), b.Infohash); err != nil {
		t.Fatal(err)
	}
	return c.Addr().String()
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
