package transfer

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
)

// testKey is a fixed publisher key.
func testKey(t testing.TB) signer.PublicKey {
	t.Helper()
	k, err := signer.NewPrivateKey(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey()
}

var testTime = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// writeRandom writes a file of size pseudo-random bytes drawn from seed.
func writeRandom(t testing.TB, p string, size int64, seed uint64, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	buf := make([]byte, 1<<20)
	for size > 0 {
		n := min(int64(len(buf)), size)
		for i := 0; i < int(n); i += 8 {
			v := r.Uint64()
			for k := 0; k < 8 && i+k < int(n); k++ {
				buf[i+k] = byte(v >> (8 * k))
			}
		}
		if _, err := f.Write(buf[:n]); err != nil {
			t.Fatal(err)
		}
		size -= n
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// testLogger logs warnings and errors to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: testLogLevel}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// testEngine is the engine newClient gives a client whose Config names
// the default one: RELAY_ENGINE=wire runs the package's tests on the wire
// engine.
var testEngine = func() Engine {
	e, err := ParseEngine(os.Getenv("RELAY_ENGINE"))
	if err != nil {
		panic(fmt.Sprintf("RELAY_ENGINE: %v", err))
	}
	return e
}()

// testEngines holds the engine of each test bothEngines runs.
var testEngines sync.Map // testing.TB: Engine

// bothEngines runs body twice, in parallel subtests named for the engine
// ("torrent", "wire"), whose clients newClient starts on that engine
// (not those of subtests body starts in turn: they take testEngine).
func bothEngines(t *testing.T, body func(t *testing.T)) {
	for _, e := range []Engine{EngineTorrent, EngineWire} {
		t.Run(e.String(), func(t *testing.T) {
			t.Parallel()
			testEngines.Store(t, e)
			t.Cleanup(func() { testEngines.Delete(t) })
			body(t)
		})
	}
}

// newClient starts a client on 127.0.0.1 in a fresh data folder (or dataDir
// when given), on the test's engine (bothEngines, else testEngine) unless
// cfg names another, closed when the test ends.
func newClient(t testing.TB, cfg Config) *Client {
	t.Helper()
	if cfg.Engine == EngineTorrent {
		cfg.Engine = testEngine
		if e, ok := testEngines.Load(t); ok {
			cfg.Engine = e.(Engine)
		}
	}
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.Listen == "" && cfg.DHT == nil {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// testBundle makes a bundle of the given files (name: size) in the data
// folder of c and returns it.
func testBundle(t testing.TB, dataDir string, files map[string]int64) *Bundle {
	t.Helper()
	src := t.TempDir()
	var seed uint64
	for name, size := range files {
		seed++
		mode := os.FileMode(0o644)
		if !strings.HasSuffix(name, ".txt") && !strings.HasSuffix(name, ".md") {
			mode = 0o755
		}
		writeRandom(t, filepath.Join(src, name), size, seed+uint64(size), mode)
	}
	b, err := Make(context.Background(), MakeOptions{
		Dir:       BundlesDir(dataDir),
		Sources:   []Source{{Path: src}},
		Key:       testKey(t),
		Version:   record.MustParseVersion("1.2.3"),
		Published: testTime,
		Notes:     "test release",
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// seeder starts a client seeding a new bundle of files.
func seeder(t testing.TB, files map[string]int64, cfg Config) (*Client, *Bundle) {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	b := testBundle(t, cfg.DataDir, files)
	c := newClient(t, cfg)
	if _, err := c.Seed(context.Background(), b.Infohash); err != nil {
		t.Fatal(err)
	}
	return c, b
}

func peersOf(cs ...*Client) []netip.AddrPort {
	var out []netip.AddrPort
	for _, c := range cs {
		out = append(out, c.Addr())
	}
	return out
}

// sameContent fails the test unless the files a and b hold the same bytes.
func sameContent(t testing.TB, a, b string) {
	t.Helper()
	fa, err := os.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || string(ba[:na]) != string(bb[:nb]) {
			t.Fatalf("%s and %s differ", a, b)
		}
		if ea != nil || eb != nil {
			if (ea == nil) != (eb == nil) {
				t.Fatalf("%s and %s differ in length", a, b)
			}
			return
		}
	}
}

var testLogLevel = func() slog.Level {
	if os.Getenv("RELAY_TEST_DEBUG") != "" {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}()

// waitFor polls cond until it holds, or fails the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// torrentEngineOnly skips t on the wire engine (RELAY_ENGINE=wire): it
// looks inside the torrent library's client, or tests a part of transfer
// the wire engine does not have yet (why).
func torrentEngineOnly(t testing.TB, why string) {
	t.Helper()
	if testEngine != EngineTorrent {
		t.Skipf("on the torrent library's engine only: %s", why)
	}
}
