package interop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"

	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/dht/localnet"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/transfer"
)

// ltScript drives libtorrent-rasterbar through its Python bindings.
var ltScript, _ = filepath.Abs(filepath.Join("testdata", "py", "lt.py"))

// ltPython is the first python3 that imports libtorrent: the one on PATH,
// else Debian's, where python3-libtorrent installs the module when another
// python3 (pyenv's, a virtualenv's) comes first on PATH. It is empty when
// there is none, and why says what is missing.
var ltPython = sync.OnceValues(func() (python, why string) {
	var found []string
	if p, err := exec.LookPath("python3"); err == nil {
		found = append(found, p)
	}
	if p, err := exec.LookPath("/usr/bin/python3"); err == nil {
		found = append(found, p)
	}
	if len(found) == 0 {
		return "", "python3 is not installed: the libtorrent interop tests need it and python3-libtorrent"
	}
	for _, p := range found {
		if exec.Command(p, "-c", "import libtorrent").Run() == nil {
			return p, ""
		}
	}
	return "", "the libtorrent module is not installed for " + found[0] +
		" (Debian: apt-get install python3-libtorrent): the libtorrent interop tests need it"
})

// needLibtorrent returns the python3 that imports libtorrent or skips t.
func needLibtorrent(t testing.TB) string {
	t.Helper()
	p, why := ltPython()
	if p == "" {
		t.Skip(why)
	}
	return p
}

// ltCommand is lt.py run with args, killed when ctx ends.
func ltCommand(t testing.TB, ctx context.Context, args ...string) *exec.Cmd {
	t.Helper()
	return exec.CommandContext(ctx, needLibtorrent(t), append([]string{ltScript}, args...)...)
}

// libtorrent runs lt.py with args and decodes the JSON it prints into v.
func libtorrent(t testing.TB, ctx context.Context, v any, args ...string) {
	t.Helper()
	runJSON(t, ltCommand(t, ctx, args...), "lt.py "+args[0], v)
}

// libtorrentSeeds starts lt.py seeding the files in dir/<name> from the
// metainfo file torrent, and returns its BitTorrent port once libtorrent
// has checked them and seeds. It stops when the test ends.
func libtorrentSeeds(t *testing.T, ctx context.Context, ln *localnet.Net, dir, torrent string) int {
	t.Helper()
	return libtorrentSeedsEnv(t, ctx, ln, dir, torrent)
}

// libtorrentSeedsEnv is libtorrentSeeds with lt.py's environment
// variables env (LT_UTP=1) set.
func libtorrentSeedsEnv(t *testing.T, ctx context.Context, ln *localnet.Net, dir, torrent string, env ...string) int {
	t.Helper()
	cmd := ltCommand(t, ctx, "seed", ln.Bootstrap.Addr().String(), torrent, dir)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	// lt.py seeds until its stdin closes: when the test ends, or this
	// process does.
	if _, err := cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	background(t, cmd, "lt.py")
	// ctx bounds the wait: CommandContext kills lt.py, which ends the read.
	line, err := bufio.NewReader(out).ReadBytes('\n')
	if err != nil {
		t.Fatalf("lt.py seed printed %q: %v", line, err)
	}
	var ready struct{ Port int }
	if err := json.Unmarshal(line, &ready); err != nil || ready.Port == 0 {
		t.Fatalf("lt.py seed printed %q: %v", line, err)
	}
	return ready.Port
}

// TestLibtorrentReadsRelayRecord: libtorrent gets the item relay stored,
// with relay's seq, signature and exact packet bytes, which decode (by hand
// in lt.py) to the record relay published. A node nearer the key's target
// than any other serves an item of a higher seq: signed by another key,
// libtorrent refuses it (it checks signatures itself) and keeps relay's;
// signed by the key, libtorrent takes it, which shows the node was asked.
func TestLibtorrentReadsRelayRecord(t *testing.T) {
	needLibtorrent(t)
	t.Parallel()
	// Each case has its own network: a lookup waits for a node that
	// left (the other case's libtorrent or near node) to time out.
	t.Run("forged", func(t *testing.T) { t.Parallel(); libtorrentReadsRelayRecord(t, true) })
	t.Run("signed", func(t *testing.T) { t.Parallel(); libtorrentReadsRelayRecord(t, false) })
}

func libtorrentReadsRelayRecord(t *testing.T, forge bool) {
	ln := localnet.ForTest(t, localnet.Config{Nodes: 16})
	ctx := ctxFor(t, time.Minute)
	key := newKey(t)
	p, _ := relaySeeds(t, ctx, ln, key, releaseDir(t, 1000))

	// The near node's packet, of another release.
	newer := p.Release
	newer.Version = record.MustParseVersion("9.0.0")
	packet, err := record.SetRelease(key.PublicKey(), p.Packet.Packet, newer)
	if err != nil {
		t.Fatal(err)
	}
	seq := p.Packet.Seq + 1000
	by, want, release := key, p.Packet, p.Release
	if forge {
		by = newKey(t)
	}
	served, err := record.Sign(by, seq, packet)
	if err != nil {
		t.Fatal(err)
	}
	if !forge {
		want, release = served, newer
	}
	id := krpc.ID(p.Packet.Target())
	id[19] ^= 1
	near := localnet.ItemNode(t, id, krpc.Bep44Return{
		V:   bencode.Bytes(strconv.Itoa(len(packet)) + ":" + string(packet)),
		K:   key.PublicKey(),
		Sig: served.Sig,
		Seq: &seq,
	})

	var got item
	libtorrent(t, ctx, &got, "get", ln.Bootstrap.Addr().String(),
		hex.EncodeToString(key.PublicKey().Ed25519()), near)
	sameItem(t, got, want)
	checkRecord(t, got.Answers, key.PublicKey(), release)
}

// TestRelayResolvesLibtorrentRecord: libtorrent stores a packet that relay
// built, signing it with the key of a seed it was given (in its own secret
// key format, whose public half must be relay's key); relay resolves it,
// checking the signature itself, and reads the release.
func TestRelayResolvesLibtorrentRecord(t *testing.T) {
	needLibtorrent(t)
	t.Parallel()
	ln := localnet.ForTest(t, localnet.Config{Nodes: 16})
	ctx := ctxFor(t, time.Minute)
	key := newKey(t)
	want := betaRelease()
	packet, err := record.SetRelease(key.PublicKey(), nil, want)
	if err != nil {
		t.Fatal(err)
	}

	var put item
	libtorrent(t, ctx, &put, "put", ln.Bootstrap.Addr().String(),
		hex.EncodeToString(key.Seed()), hex.EncodeToString(packet))
	if put.Key != hex.EncodeToString(key.PublicKey().Ed25519()) {
		t.Fatalf("libtorrent signed with key %s, relay's is %x", put.Key, key.PublicKey().Ed25519())
	}
	if put.Nodes == 0 {
		t.Fatal("libtorrent stored the item on no node")
	}
	// libtorrent signs seq 1 for a key with no item yet: the seq it found
	// plus one.
	t.Logf("libtorrent stored seq %d on %d nodes", put.Seq, put.Nodes)

	r, err := client(t, ln, true).Resolve(ctx, key.PublicKey(), "beta")
	if err != nil {
		t.Fatal(err)
	}
	sameItem(t, put, r.Packet)
	if !bytes.Equal(r.Packet.Packet, packet) {
		t.Errorf("relay resolved packet\n %x\nrelay built\n %x", r.Packet.Packet, packet)
	}
	sameRelease(t, r.Release, want)
}

// TestLibtorrentFetchesFromRelay: libtorrent downloads a bundle that relay
// seeds given only its magnet link, with the seeder's address or finding
// it in the local DHT, checks every piece, and has the same bytes.
func TestLibtorrentFetchesFromRelay(t *testing.T) {
	needLibtorrent(t)
	t.Parallel()
	t.Run("address", func(t *testing.T) { t.Parallel(); libtorrentFetchesFromRelay(t, true) })
	t.Run("dht", func(t *testing.T) { t.Parallel(); libtorrentFetchesFromRelay(t, false) })
}

func libtorrentFetchesFromRelay(t *testing.T, giveAddr bool) {
	ln := localnet.ForTest(t, localnet.Config{Nodes: 16})
	ctx := ctxFor(t, time.Minute)
	p, seeder := relaySeeds(t, ctx, ln, newKey(t), releaseDir(t, 3<<20, 1234567, 10))
	out := t.TempDir()
	args := []string{"fetch", ln.Bootstrap.Addr().String(), p.Bundle.Magnet(), out}
	if giveAddr {
		a, err := seeder.PeerAddr()
		if err != nil {
			t.Fatal(err)
		}
		args = append(args, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), a.Port()).String())
	}
	start := time.Now()
	var got struct {
		Name string
		Size int64
	}
	libtorrent(t, ctx, &got, args...)
	t.Logf("libtorrent fetched %d bytes in %v", got.Size, time.Since(start))
	if got.Name != p.Bundle.Name || got.Size != p.Bundle.Size {
		t.Errorf("libtorrent fetched %q of %d bytes, relay seeds %q of %d", got.Name, got.Size, p.Bundle.Name, p.Bundle.Size)
	}
	// libtorrent puts the torrent's folder, named after it, in its save
	// path.
	sameTree(t, p.Bundle.Dir, filepath.Join(out, p.Bundle.Name))
}

// TestLibtorrentOverUTP: with Config.UTP, relay on either engine serves
// libtorrent that dials uTP only, and on the torrent library's engine
// fetches from libtorrent that accepts uTP only (LT_UTP=1), given each
// other's address. The wire engine's uTP dials (anacrolix/utp) to
// libtorrent time out waiting for its answer to the SYN (every dial of 3
// runs under load 12, 1 of 1 passed at load 7), though the torrent
// library's, on the same package without cgo, get through: not yet
// understood, so that direction is not tested on it.
func TestLibtorrentOverUTP(t *testing.T) {
	needLibtorrent(t)
	t.Parallel()
	for _, e := range []transfer.Engine{transfer.EngineTorrent, transfer.EngineWire} {
		t.Run(e.String(), func(t *testing.T) {
			t.Parallel()
			t.Run("libtorrent fetches", func(t *testing.T) {
				t.Parallel()
				ln := localnet.ForTest(t, localnet.Config{Nodes: 16})
				ctx := ctxFor(t, time.Minute)
				p, seeder := relaySeedsCfg(t, ctx, ln, relay.Config{Engine: e, UTP: true}, newKey(t), releaseDir(t, 3<<20, 4321))
				a, err := seeder.PeerAddr()
				if err != nil {
					t.Fatal(err)
				}
				out := t.TempDir()
				cmd := ltCommand(t, ctx, "fetch", ln.Bootstrap.Addr().String(), p.Bundle.Magnet(), out,
					netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), a.Port()).String())
				cmd.Env = append(os.Environ(), "LT_UTP=1")
				var got struct{ Size int64 }
				runJSON(t, cmd, "lt.py fetch", &got)
				if got.Size != p.Bundle.Size {
					t.Errorf("libtorrent fetched %d bytes, relay seeds %d", got.Size, p.Bundle.Size)
				}
				sameTree(t, p.Bundle.Dir, filepath.Join(out, p.Bundle.Name))
			})
			t.Run("relay fetches", func(t *testing.T) {
				if e == transfer.EngineWire || testEngine == transfer.EngineWire { // openClient's engine for EngineTorrent
					t.Skip("the wire engine's uTP dials do not reach libtorrent yet")
				}
				t.Parallel()
				seed := func(t *testing.T, ctx context.Context, ln *localnet.Net, dir, torrent string) int {
					return libtorrentSeedsEnv(t, ctx, ln, dir, torrent, "LT_UTP=1")
				}
				relayFetchesFromCfg(t, true, relay.Config{ReadOnly: true, Engine: e, UTP: true}, seed)
			})
		})
	}
}

// TestRelayFetchesFromLibtorrent: relay fetches and verifies a bundle that
// only libtorrent seeds (the publisher is gone), finding the record in the
// DHT; given libtorrent's address, and with the DHT alone (libtorrent
// announces itself there).
func TestRelayFetchesFromLibtorrent(t *testing.T) {
	needLibtorrent(t)
	t.Parallel()
	t.Run("address", func(t *testing.T) { t.Parallel(); relayFetchesFrom(t, true, libtorrentSeeds) })
	t.Run("dht", func(t *testing.T) { t.Parallel(); relayFetchesFrom(t, false, libtorrentSeeds) })
}
