package interop

import (
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/dht/localnet"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/transfer"
)

// freePort returns a port free for both TCP and UDP on 127.0.0.1.
func freePort(t testing.TB) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// background starts cmd with its stderr, and its stdout unless set, in a
// log file; kills it when the test ends; and logs the file's content then
// if the test failed. name names cmd in the log.
func background(t testing.TB, cmd *exec.Cmd, name string) {
	t.Helper()
	log, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	if cmd.Stdout == nil {
		cmd.Stdout = log
	}
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("%s output:\n%s", name, b)
		}
	})
}

// aria2 starts aria2c on 127.0.0.1 with its DHT joined through the local
// network's bootstrap node, and the given extra arguments. It returns the
// command (started, or run to completion when wait is set) and aria2's
// BitTorrent port.
func aria2(t testing.TB, ctx context.Context, ln *localnet.Net, dir string, wait bool, args ...string) (*exec.Cmd, int) {
	t.Helper()
	bin := needAria2(t)
	port := freePort(t)
	dhtPort := freePort(t)
	base := []string{
		"--dir=" + dir,
		"--interface=127.0.0.1",
		"--disable-ipv6=true",
		"--listen-port=" + strconv.Itoa(port),
		"--enable-dht=true",
		"--enable-dht6=false",
		"--dht-listen-port=" + strconv.Itoa(dhtPort),
		"--dht-entry-point=" + ln.Bootstrap.Addr().String(),
		"--dht-file-path=" + filepath.Join(t.TempDir(), "dht.dat"),
		"--bt-enable-lpd=false",
		"--enable-peer-exchange=false",
		"--bt-save-metadata=false",
		"--follow-torrent=mem",
		"--file-allocation=none",
		"--summary-interval=0",
		"--console-log-level=warn",
		"--no-conf=true",
		"--auto-save-interval=0",
		"--allow-overwrite=true",
	}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	background(t, cmd, "aria2c")
	if wait {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("aria2c: %v", err)
		}
	}
	return cmd, port
}

// relaySeeds publishes version 1.0.0 of the files in src under key with a
// relay client on ln, which keeps seeding the bundle, and returns
// what it published and the client. The client's log, the torrent
// library's included, is written to the test's if the test fails.
func relaySeeds(t *testing.T, ctx context.Context, ln *localnet.Net, key *signer.PrivateKey, src string) (*relay.Published, *relay.Client) {
	t.Helper()
	return relaySeedsCfg(t, ctx, ln, relay.Config{}, key, src)
}

// relaySeedsCfg is relaySeeds with a client of cfg.
func relaySeedsCfg(t *testing.T, ctx context.Context, ln *localnet.Net, cfg relay.Config, key *signer.PrivateKey, src string) (*relay.Published, *relay.Client) {
	t.Helper()
	cfg.Logger = keptLog(t, "relay seeder")
	seeder := openClient(t, ln, cfg)
	p, err := seeder.Publish(ctx, relay.PublishOptions{
		Key: key, Version: record.MustParseVersion("1.0.0"),
		Sources: []transfer.Source{{Path: src}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return p, seeder
}

// TestAria2FetchesFromRelay: aria2 downloads a bundle that relay seeds,
// given only its magnet link and the local DHT, and has the same bytes.
func TestAria2FetchesFromRelay(t *testing.T) {
	needAria2(t)
	t.Parallel() // mostly waits on aria2's DHT timers
	ln := localnet.ForTest(t, localnet.Config{Nodes: 16})
	ctx := ctxFor(t, 2*time.Minute)
	p, _ := relaySeeds(t, ctx, ln, newKey(t), releaseDir(t, 3<<20, 1234567, 10))

	out := t.TempDir()
	start := time.Now()
	aria2(t, ctx, ln, out, true, "--seed-time=0", p.Bundle.Magnet())
	t.Logf("aria2c fetched %d bytes in %v", p.Bundle.Size, time.Since(start))
	// aria2 puts the torrent's folder, named after it, in --dir.
	sameTree(t, p.Bundle.Dir, filepath.Join(out, p.Bundle.Name))
}

// TestRelayFetchesFromAria2: relay fetches and verifies a bundle that only
// aria2 seeds (the publisher is gone), finding the record in the DHT; given
// aria2's address, and with the DHT alone (aria2 announces itself there).
func TestRelayFetchesFromAria2(t *testing.T) {
	needAria2(t)
	t.Parallel()
	seed := func(t *testing.T, ctx context.Context, ln *localnet.Net, dir, torrent string) int {
		_, port := aria2(t, ctx, ln, dir, false, "--check-integrity=true", "--seed-ratio=0.0", torrent)
		return port
	}
	t.Run("address", func(t *testing.T) { t.Parallel(); relayFetchesFrom(t, true, seed) })
	t.Run("dht", func(t *testing.T) { t.Parallel(); relayFetchesFrom(t, false, seed) })
}

// relayFetchesFrom publishes a bundle with relay, stops the publisher, has
// seed start an independent client that seeds a copy of the bundle's files
// (dir/<bundle name>) from the bundle's metainfo file torrent and return its
// BitTorrent port on 127.0.0.1, then fetches the release with relay, given
// that port when giveAddr is set, and checks the files. The bundle holds
// files of the given sizes; none given, 2 MiB and 4321 bytes.
func relayFetchesFrom(t *testing.T, giveAddr bool,
	seed func(t *testing.T, ctx context.Context, ln *localnet.Net, dir, torrent string) int, sizes ...int) {
	relayFetchesFromCfg(t, giveAddr, relay.Config{ReadOnly: true}, seed, sizes...)
}

// relayFetchesFromCfg is relayFetchesFrom with a fetching client of cfg.
func relayFetchesFromCfg(t *testing.T, giveAddr bool, cfg relay.Config,
	seed func(t *testing.T, ctx context.Context, ln *localnet.Net, dir, torrent string) int, sizes ...int) {
	ln := localnet.ForTest(t, localnet.Config{Nodes: 16})
	ctx := ctxFor(t, 2*time.Minute)
	if len(sizes) == 0 {
		sizes = []int{2 << 20, 4321}
	}
	src := releaseDir(t, sizes...)
	p, pub := relaySeeds(t, ctx, ln, newKey(t), src)
	// The other client seeds a copy of the bundle's files from the
	// bundle's metainfo.
	seedDir := t.TempDir()
	if err := os.CopyFS(filepath.Join(seedDir, p.Bundle.Name), os.DirFS(p.Bundle.Dir)); err != nil {
		t.Fatal(err)
	}
	torrent := filepath.Join(filepath.Dir(p.Bundle.Dir), p.Bundle.Name+".torrent")
	tb, err := os.ReadFile(torrent)
	if err != nil {
		t.Fatal(err)
	}
	torrent = filepath.Join(t.TempDir(), "bundle.torrent")
	if err := os.WriteFile(torrent, tb, 0o644); err != nil {
		t.Fatal(err)
	}
	pub.Close()
	port := seed(t, ctx, ln, seedDir, torrent)

	fetcher := openClient(t, ln, cfg)
	outDir := t.TempDir()
	o := relay.FetchOptions{Key: p.Packet.Key, Out: outDir, AllPlatforms: true}
	if giveAddr {
		o.Peers = []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))}
	}
	start := time.Now()
	res, err := fetcher.Fetch(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Release.Infohash != p.Bundle.Infohash {
		t.Fatalf("fetched %s, published %s", res.Release.Infohash, p.Bundle.Infohash)
	}
	t.Logf("relay fetched from port %d in %v", port, time.Since(start))
	sameTree(t, src, outDir)
}

// TestAria2FetchesFromRelaySeed: the whole path with relay's processes. A
// `relay seed` follows a key; `relay publish` returns once that seeder
// holds the bundle and exits; aria2, given only the magnet link publish
// printed and the local DHT, downloads the bundle from the seeder alone and
// has the same bytes.
func TestAria2FetchesFromRelaySeed(t *testing.T) {
	needAria2(t)
	t.Parallel()
	ln := localnet.ForTest(t, localnet.Config{Nodes: 16})
	ctx := ctxFor(t, 2*time.Minute)
	work := t.TempDir()
	keyFile := filepath.Join(work, "k.key")
	out, err := runRelay(t, ln, filepath.Join(work, "pub"), "init", "--key", keyFile).Output()
	if err != nil {
		t.Fatalf("relay init: %v", err)
	}
	pubKey := strings.TrimSpace(string(out))

	seed := runRelay(t, ln, filepath.Join(work, "seeder"), "seed", "--follow", pubKey, "--interval", "300ms")
	background(t, seed, "relay-seed")

	src := releaseDir(t, 3<<20, 1234567, 10)
	publish := runRelay(t, ln, filepath.Join(work, "pub"), "--json", "publish", "--key", keyFile, "--version", "1.0.0", "--timeout", "60s", src)
	var published struct {
		Magnet   string `json:"magnet"`
		Complete int    `json:"peers_complete"`
	}
	runJSON(t, publish, "relay publish", &published)
	if published.Complete < 1 {
		t.Fatalf("relay publish returned with %d peers holding the bundle, want the seeder", published.Complete)
	}

	dl := t.TempDir()
	aria2(t, ctx, ln, dl, true, "--seed-time=0", "--log=-", "--log-level=info", published.Magnet)
	// The magnet link's dn= is the bundle's folder, which aria2 puts in --dir.
	name := published.Magnet[strings.LastIndex(published.Magnet, "dn=")+3:]
	got := filepath.Join(dl, name)
	if _, err := os.Stat(filepath.Join(got, record.ManifestName)); err != nil {
		t.Fatalf("aria2 downloaded no manifest: %v", err)
	}
	os.Remove(filepath.Join(got, record.ManifestName))
	sameTree(t, src, got)
}
