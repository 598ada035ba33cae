package transfer

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/relay-sh/relay/record"
)

// modify changes one byte of a file, keeping its size, and moves its time.
func modify(t *testing.T, p string, off int64) {
	t.Helper()
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	f.Close()
	later := time.Now().Add(time.Second)
	if err := os.Chtimes(p, later, later); err != nil {
		t.Fatal(err)
	}
}

// TestSeedRestart: a bundle relay made is served at once, and served
// again after a restart, without hashing it.
func TestSeedRestart(t *testing.T) {
	t.Parallel()
	bothEngines(t, func(t *testing.T) {
		dataDir := t.TempDir()
		b := testBundle(t, dataDir, map[string]int64{"app": 3 << 20, "b.txt": 100})
		for range 2 {
			c := newClient(t, Config{DataDir: dataDir})
			if _, err := c.Seed(context.Background(), b.Infohash); err != nil {
				t.Fatal(err)
			}
			st, _ := c.Stats(b.Infohash)
			if st.Hashed != 0 || st.Have != b.Size {
				t.Fatalf("seeding hashed %d bytes and has %d of %d", st.Hashed, st.Have, b.Size)
			}
			c.Close()
		}
	})
}

// TestSeedVerifiesForeignData: a bundle folder relay did not write (no
// state file) is hashed before it is served; one with a damaged file is
// refused.
func TestSeedVerifiesForeignData(t *testing.T) {
	t.Parallel()
	bothEngines(t, func(t *testing.T) {
		made := t.TempDir()
		b := testBundle(t, made, map[string]int64{"app": 1 << 20, "b.txt": 100})
		for _, damaged := range []bool{false, true} {
			dataDir := t.TempDir()
			dst := filepath.Join(BundlesDir(dataDir), b.Infohash.String())
			if err := os.CopyFS(dst, os.DirFS(filepath.Join(BundlesDir(made), b.Infohash.String()))); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(dst, stateName)); err != nil {
				t.Fatal(err)
			}
			if damaged {
				modify(t, filepath.Join(dst, b.Name, "app"), 1000)
			}
			c := newClient(t, Config{DataDir: dataDir})
			_, err := c.Seed(context.Background(), b.Infohash)
			if damaged {
				if !errors.Is(err, record.ErrFileMismatch) {
					t.Fatalf("seeding a damaged bundle: %v", err)
				}
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			st, _ := c.Stats(b.Infohash)
			if st.Hashed != b.Size || st.Have != b.Size {
				t.Fatalf("seeding hashed %d bytes and has %d of %d", st.Hashed, st.Have, b.Size)
			}
		}
	})
}

// TestSeedChangedFile: a file changed on the seeder's disk while it was
// stopped is found when it starts again and the bundle is not served; a
// file changed while it runs is found by the recheck and its pieces are
// no longer served as valid; a fetch from it does not complete.
func TestSeedChangedFile(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	b := testBundle(t, dataDir, map[string]int64{"app_linux_amd64": 2 << 20, "README.txt": 100})
	c := newClient(t, Config{DataDir: dataDir})
	if _, err := c.Seed(context.Background(), b.Infohash); err != nil {
		t.Fatal(err)
	}
	c.Close()
	modify(t, filepath.Join(b.Dir, "app_linux_amd64"), 12345)
	c = newClient(t, Config{DataDir: dataDir})
	if _, err := c.Seed(context.Background(), b.Infohash); !errors.Is(err, record.ErrFileMismatch) {
		t.Fatalf("seeding a changed bundle: %v", err)
	}
	if _, ok := c.Stats(b.Infohash); ok {
		t.Fatal("the changed bundle is still served")
	}
	c.Close()

	// While it runs.
	torrentEngineOnly(t, "Recheck is not on the wire engine yet")
	dataDir = t.TempDir()
	b = testBundle(t, dataDir, map[string]int64{"app_linux_amd64": 2 << 20, "README.txt": 100})
	c = newClient(t, Config{DataDir: dataDir, Recheck: 50 * time.Millisecond})
	if _, err := c.Seed(context.Background(), b.Infohash); err != nil {
		t.Fatal(err)
	}
	modify(t, filepath.Join(b.Dir, "app_linux_amd64"), 1<<20+7)
	waitFor(t, 10*time.Second, "the seeder to notice the change", func() bool {
		st, _ := c.Stats(b.Infohash)
		return st.Have == b.Size-b.PieceLength
	})
	l := newClient(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := l.Fetch(ctx, FetchRequest{Key: testKey(t), Release: b.Release(testTime), Peers: peersOf(c)})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("fetch from a damaged seeder: %v", err)
	}
}

// TestIdleSeederKeepAlivesSpaced: a seeder sends a connection that is
// idle but of use (a peer interested in what it seeds, asking nothing)
// at most one keep-alive a second. libtorrent's uTP starts its
// retransmission timeout (at least 500 ms) again at every packet that
// arrives: with a keep-alive every 250 ms it never expired, and a request
// libtorrent lost twice on the way was never sent again, the fetch
// waiting with the seeder idle (interop TestLibtorrentFetchesFromRelay
// stalled so on a loaded machine, which drops UDP datagrams). The
// keep-alives are counted over 5 s from the first: 6 at one a second, 8
// allowed for a first one read late; a quarter second sent 20.
func TestIdleSeederKeepAlivesSpaced(t *testing.T) {
	torrentEngineOnly(t, "times the torrent library's keep-alives (peerwire sends one every 2 minutes)")
	t.Parallel()
	s, b := seeder(t, map[string]int64{"app": 1 << 20}, Config{})
	conn, err := net.Dial("tcp", peersOf(s)[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if err := wireHandshake(conn, b.Infohash, [20]byte{'-', 'K', 'A', '0', '0', '0', '1', '-'}); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte{0, 0, 0, 1, msgInterested}); err != nil {
		t.Fatal(err)
	}
	const window = 5 * time.Second
	var first time.Time
	keepAlives := 0
	for first.IsZero() || time.Since(first) < window {
		var n [4]byte
		if _, err := io.ReadFull(conn, n[:]); err != nil {
			t.Fatalf("after %d keep-alives: %v", keepAlives, err)
		}
		if l := binary.BigEndian.Uint32(n[:]); l > 0 {
			if _, err := io.CopyN(io.Discard, conn, int64(l)); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if first.IsZero() {
			first = time.Now()
		}
		keepAlives++
	}
	t.Logf("%d keep-alives in the %v from the first", keepAlives, window)
	if keepAlives > 8 {
		t.Errorf("%d keep-alives in %v to an idle peer, want at most 8 (one a second)", keepAlives, window)
	}
}
