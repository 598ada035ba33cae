package peerwire

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/relay-sh/relay/dht/localnet"
)

// ltScript drives libtorrent-rasterbar through its Python bindings (the
// interop package's helper).
var ltScript, _ = filepath.Abs(filepath.Join("..", "..", "interop", "testdata", "py", "lt.py"))

// ltPython is the first python3 that imports libtorrent (the one on PATH,
// else Debian's), or "".
var ltPython = sync.OnceValue(func() string {
	for _, p := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(p, "-c", "import libtorrent").Run() == nil {
			return p
		}
	}
	return ""
})

// needLibtorrent returns the python3 that imports libtorrent or skips t.
func needLibtorrent(t testing.TB) string {
	t.Helper()
	p := ltPython()
	if p == "" {
		t.Skip("python3-libtorrent is not installed (Debian: apt-get install python3-libtorrent)")
	}
	return p
}

// seeded returns a client that has b (checked from its files) and serves
// it on 127.0.0.1 until the test ends, and its address.
func seeded(t testing.TB, b *bundle, cfg Config) (*Client, *Torrent, string) {
	t.Helper()
	c, tor := seedClient(t, b, cfg)
	return c, tor, serveOn(t, c)
}

// seededWith is seeded with the torrent added with o.
func seededWith(t testing.TB, b *bundle, cfg Config, o TorrentOptions) (*Client, *Torrent, string) {
	t.Helper()
	c, tor := seedClientWith(t, b, cfg, o)
	return c, tor, serveOn(t, c)
}

// seedClient returns a client of cfg that has b, checked from its files.
func seedClient(t testing.TB, b *bundle, cfg Config) (*Client, *Torrent) {
	t.Helper()
	return seedClientWith(t, b, cfg, TorrentOptions{})
}

// seedClientWith is seedClient with the torrent added with o.
func seedClientWith(t testing.TB, b *bundle, cfg Config, o TorrentOptions) (*Client, *Torrent) {
	t.Helper()
	files, err := OpenFiles(b.root, b.info)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { files.Close() })
	c := New(cfg)
	tor, err := c.Add(b.infoBytes, files, o)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := tor.Check(context.Background()); err != nil || n != tor.npieces {
		t.Fatalf("Check: %d of %d pieces, %v", n, tor.npieces, err)
	}
	return c, tor
}

// TestDownloadFromLibtorrent: the info and the pieces come from
// libtorrent seeding the bundle.
func TestDownloadFromLibtorrent(t *testing.T) {
	py := needLibtorrent(t)
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 3<<20 + 4321, "lib/a": 100 << 10}, 64<<10)
	seed := libtorrentSeeds(t, py, b)
	ctx := ctxFor(t, 2*time.Minute)
	tor, dir := leecher(t, ctx, New(Config{}), b, seed)
	if err := tor.Download(ctx, DownloadOptions{Peers: []string{seed}}); err != nil {
		t.Fatal(err)
	}
	sameFiles(t, b, dir)
}

// libtorrentSeeds seeds b with libtorrent (lt.py seed, its DHT on a
// local network of its own) until the test ends, and returns its address.
func libtorrentSeeds(t *testing.T, py string, b *bundle) string {
	t.Helper()
	ln := localnet.ForTest(t, localnet.Config{Nodes: 2})
	cmd := exec.CommandContext(ctxFor(t, 10*time.Minute), py, ltScript, "seed", ln.Bootstrap.Addr().String(),
		filepath.Join(b.root, b.Name+".torrent"), b.root)
	if _, err := cmd.StdinPipe(); err != nil { // lt.py seeds until its stdin closes
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadBytes('\n')
	var ready struct{ Port int }
	if err != nil || json.Unmarshal(line, &ready) != nil || ready.Port == 0 {
		t.Fatalf("lt.py seed printed %q (%v): %s", line, err, stderr.Bytes())
	}
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(ready.Port)).String()
}

// TestServeToLibtorrent: libtorrent, given the magnet link and this
// package's address, fetches the info and every piece and checks them.
func TestServeToLibtorrent(t *testing.T) {
	py := needLibtorrent(t)
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 2<<20 + 99, "x/y": 300 << 10}, 64<<10)
	_, _, addr := seeded(t, b, Config{})
	ln := localnet.ForTest(t, localnet.Config{Nodes: 2})
	dir := t.TempDir()
	if err := ltFetch(ctxFor(t, 2*time.Minute), py, ln, b, dir, addr); err != nil {
		t.Fatal(err)
	}
	sameFiles(t, b, dir)
}

// ltFetch has libtorrent (python py) fetch b into dir over TCP, given the
// magnet link, the DHT ln and the address of a peer, and checks what
// lt.py printed.
func ltFetch(ctx context.Context, py string, ln *localnet.Net, b *bundle, dir, addr string) error {
	cmd := exec.CommandContext(ctx, py, ltScript, "fetch", ln.Bootstrap.Addr().String(), b.Magnet(), dir, addr)
	cmd.Env = append(os.Environ(), "LT_TCP=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	got, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("lt.py fetch: %w\n%s", err, stderr.Bytes())
	}
	var res struct {
		Name string
		Size int64
	}
	if err := json.Unmarshal(got, &res); err != nil || res.Size != b.Size || res.Name != b.Name {
		return fmt.Errorf("lt.py fetch printed %s (%v), want %s of %d bytes", got, err, b.Name, b.Size)
	}
	return nil
}
