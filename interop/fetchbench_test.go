package interop

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/dht/localnet"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/transfer"
)

// BenchmarkFetchVsClients: a bundle of one big file (128 MiB; 1 GiB with
// RELAY_BENCH_BIG=1) served by one `relay seed` process, on the torrent
// library's engine and then on relay's own (RELAY_ENGINE=wire; the figures
// against it are named "-wireseed"; RELAY_BENCH_SEEDERS=torrent or wire
// for one; RELAY_BENCH_PROFILE=DIR writes a CPU profile of every fetch
// command and of each seeder there), fetched by:
//
//   - the whole `relay fetch --out DIR KEY` command, as a user runs it: the
//     built binary, bootstrapped through a `relay node` process, resolving,
//     downloading, verifying and placing (wall time and its CPU time); and
//     the same on relay's own BitTorrent engine (RELAY_ENGINE=wire,
//     transfer.EngineWire);
//   - relay.Client.Fetch in this process, given the seeder's address,
//     placing nothing (the library's figure), on either engine;
//   - libtorrent (lt.py fetch, given the magnet link and the seeder's
//     address, over TCP as relay; timed from adding the magnet link to
//     every piece checked, without the Python start, which its whole run
//     adds);
//   - aria2, which finds the seeder through the DHT and waits seconds on
//     its own DHT timers first, so it is timed from its first connection to
//     the seeder to the end of its download (from its log);
//
// against the floors of this machine: `openssl dgst -sha256` of the file
// (SHA-256 with the CPU's extensions; Go's crypto/sha256, which also uses
// them, is reported beside it) and `cp` of the file. The machine is shared,
// so each figure is the best of RELAY_BENCH_ROUNDS rounds (default 2), the
// rounds running every contender in turn, and the ratios are of those
// bests. A client that is not installed is left out and says so.
func BenchmarkFetchVsClients(b *testing.B) {
	size := int64(128 << 20)
	if _, err := exec.LookPath("openssl"); err != nil {
		b.Skip("openssl is not installed (Debian: openssl): its dgst -sha256 is the floor this is timed against")
	}
	if os.Getenv("RELAY_BENCH_BIG") != "" {
		size = 1 << 30
	}
	rounds := 2
	if n, err := strconv.Atoi(os.Getenv("RELAY_BENCH_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	ln := localnet.ForTest(b, localnet.Config{Nodes: 16})
	ctx := ctxFor(b, 30*time.Minute)
	key := newKey(b)
	seedDir, bundle := publishBig(b, ctx, ln, key, size)
	seeded := filepath.Join(bundle.Dir, "big")

	// A `relay node` the fetch command joins the DHT through.
	node := runRelay(b, ln, b.TempDir(), "node")
	node.Env = append(node.Env, fmt.Sprintf("RELAY_LISTEN=127.0.0.1:%d", freePort(b)))
	nodeAddr := waitStdout(b, node, time.Minute)
	// The seeder: `relay seed` on the publisher's data folder, on a port
	// of its own (UDP for the DHT, TCP for peers), on each engine in turn
	// (RELAY_BENCH_SEEDERS=torrent or wire for one): every contender of a
	// row is timed against the same seeder, and the floors in the same
	// rounds.
	port := freePort(b)
	peer := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	seeders := []transfer.Engine{transfer.EngineTorrent, transfer.EngineWire}
	if v := os.Getenv("RELAY_BENCH_SEEDERS"); v != "" {
		e, err := transfer.ParseEngine(v)
		if err != nil {
			b.Fatalf("RELAY_BENCH_SEEDERS: %v", err)
		}
		seeders = []transfer.Engine{e}
	}
	for _, se := range seeders {
		seed := runRelay(b, ln, seedDir, "--json", "seed")
		seed.Env = append(seed.Env, "RELAY_LISTEN="+peer.String(), "RELAY_ENGINE="+se.String())
		if dir := os.Getenv("RELAY_BENCH_PROFILE"); dir != "" {
			seed.Env = append(seed.Env, "RELAY_CPUPROFILE="+filepath.Join(dir, fmt.Sprintf("seed-%s.pprof", se)))
		}
		waitStdoutFor(b, seed, `"seeding"`, time.Minute)
		benchFetchFrom(b, ctx, ln, key, bundle, seeded, size, rounds, nodeAddr, peer, se)
		// Stopped before the next seeder takes its port, so that every
		// client finds one seeder only.
		seed.Process.Signal(syscall.SIGINT)
		seed.Wait()
	}
}

// benchFetchFrom runs BenchmarkFetchVsClients' rounds against one seeder,
// the one on engine se at peer, and reports their figures (named with
// "-wireseed" for a seeder on the wire engine).
func benchFetchFrom(b *testing.B, ctx context.Context, ln *localnet.Net, key *signer.PrivateKey, bundle *transfer.Bundle, seeded string, size int64, rounds int, nodeAddr string, peer netip.AddrPort, se transfer.Engine) {
	var fig struct {
		openssl, goSHA, cp                         time.Duration
		cmd, cmdCPU, lib, lt, ltRun, ltCPU, ariaTx time.Duration
		wireCmd, wireCmdCPU, wireLib               time.Duration
		ltMeta                                     float64
	}
	better := func(cur *time.Duration, d time.Duration) {
		if *cur == 0 || d < *cur {
			*cur = d
		}
	}
	py, ltWhy := ltPython()
	_, ariaErr := exec.LookPath("aria2c")
	for round := range rounds {
		better(&fig.openssl, timed(b, func() { run(b, exec.Command("openssl", "dgst", "-sha256", seeded)) }))
		better(&fig.goSHA, timed(b, func() { goSHA256(b, seeded) }))
		cpy := filepath.Join(b.TempDir(), "copy")
		better(&fig.cp, timed(b, func() { run(b, exec.Command("cp", seeded, cpy)) }))
		os.Remove(cpy)

		for _, e := range []transfer.Engine{transfer.EngineTorrent, transfer.EngineWire} {
			cmd, cmdCPU, lib := &fig.cmd, &fig.cmdCPU, &fig.lib
			if e == transfer.EngineWire {
				cmd, cmdCPU, lib = &fig.wireCmd, &fig.wireCmdCPU, &fig.wireLib
			}
			out := b.TempDir()
			fetch := runRelay(b, ln, b.TempDir(), "-q", "fetch", "--out", out, key.PublicKey().String())
			fetch.Env = append(fetch.Env, "RELAY_BOOTSTRAP="+nodeAddr, "RELAY_ENGINE="+e.String())
			if dir := os.Getenv("RELAY_BENCH_PROFILE"); dir != "" {
				// cmd/relay's RELAY_CPUPROFILE: a CPU profile of each
				// fetch command, for `go tool pprof`.
				fetch.Env = append(fetch.Env, "RELAY_CPUPROFILE="+filepath.Join(dir, fmt.Sprintf("fetch-%s-from-%s-%d.pprof", e, se, round+1)))
			}
			better(cmd, timed(b, func() { run(b, fetch) }))
			better(cmdCPU, fetch.ProcessState.UserTime()+fetch.ProcessState.SystemTime())
			if fi, err := os.Stat(filepath.Join(out, "big")); err != nil || fi.Size() != size {
				b.Fatalf("relay fetch --out (engine %s) placed %v (%v), want %d bytes", e, fi, err, size)
			}
			os.RemoveAll(out)

			// Closed before the other clients run, so that they find one
			// seeder only.
			c, err := relay.Open(ctx, relay.Config{DataDir: b.TempDir(), Bootstrap: []string{ln.Bootstrap.Addr().String()}, Listen: "127.0.0.1:0", ReadOnly: true, Engine: e})
			if err != nil {
				b.Fatal(err)
			}
			better(lib, timed(b, func() {
				if _, err := c.Fetch(ctx, relay.FetchOptions{Key: key.PublicKey(), AllPlatforms: true, Peers: []netip.AddrPort{peer}}); err != nil {
					b.Fatal(err)
				}
			}))
			c.Close()
		}

		if py != "" {
			var got struct {
				Size     int64
				Seconds  float64
				Metadata float64 `json:"metadata_seconds"`
			}
			lt := ltCommand(b, ctx, "fetch", ln.Bootstrap.Addr().String(), bundle.Magnet(), b.TempDir(), peer.String())
			// Over TCP, as relay fetches: libtorrent dials uTP first, and
			// the seeder's uTP (the torrent library's, on its DHT socket)
			// ran at about 15 MB/s here, which timed lt.py out.
			lt.Env = append(os.Environ(), "LT_TCP=1")
			better(&fig.ltRun, timed(b, func() { runJSON(b, lt, "lt.py fetch", &got) }))
			if got.Size != bundle.Size {
				b.Fatalf("libtorrent fetched %d bytes, the bundle has %d", got.Size, bundle.Size)
			}
			better(&fig.lt, time.Duration(got.Seconds*float64(time.Second)))
			better(&fig.ltCPU, lt.ProcessState.UserTime()+lt.ProcessState.SystemTime())
			fig.ltMeta = got.Metadata
		}
		if ariaErr == nil {
			torrent := filepath.Join(filepath.Dir(bundle.Dir), bundle.Name+".torrent")
			logFile := filepath.Join(b.TempDir(), "aria2.log")
			dir := b.TempDir()
			syscall.Sync()
			aria2(b, ctx, ln, dir, true, "--seed-time=0", "--log="+logFile, "--log-level=info", torrent)
			// aria2's log shows no connection of its own when the
			// seeder dialled it first (it looks its peers up in the DHT):
			// that round has no figure for it.
			if tx, err := aria2Transfer(logFile); err != nil {
				b.Logf("round %d: %v", round+1, err)
			} else {
				better(&fig.ariaTx, tx)
			}
			os.RemoveAll(dir)
		}
		b.Logf("seeder on %s, round %d (best so far): relay fetch --out %v (CPU %v), on wire %v (CPU %v), relay.Client %v, on wire %v, libtorrent %v, openssl %v, cp %v",
			se, round+1, fig.cmd, fig.cmdCPU, fig.wireCmd, fig.wireCmdCPU, fig.lib, fig.wireLib, fig.lt, fig.openssl, fig.cp)
	}
	gib := float64(size) / (1 << 30)
	report := func(v float64, unit string) {
		if se == transfer.EngineWire {
			unit += "-wireseed"
		}
		b.ReportMetric(v, unit)
	}
	report(fig.cmd.Seconds(), "s/relay-fetch-cmd")
	report(fig.cmdCPU.Seconds()/gib, "cpu-s/GiB-relay-fetch-cmd")
	report(fig.lib.Seconds(), "s/relay-client-fetch")
	report(fig.wireCmd.Seconds(), "s/relay-fetch-cmd-wire")
	report(fig.wireCmdCPU.Seconds()/gib, "cpu-s/GiB-relay-fetch-cmd-wire")
	report(fig.wireLib.Seconds(), "s/relay-client-fetch-wire")
	report(fig.wireCmd.Seconds()/fig.cmd.Seconds(), "x-relay-fetch-cmd-wire")
	report(fig.openssl.Seconds(), "s/openssl-sha256")
	report(fig.goSHA.Seconds(), "s/go-sha256")
	report(fig.cp.Seconds(), "s/cp")
	report(fig.cmd.Seconds()/fig.openssl.Seconds(), "x-openssl-sha256")
	report(fig.wireCmd.Seconds()/fig.openssl.Seconds(), "x-openssl-sha256-wire")
	report(fig.lib.Seconds()/fig.openssl.Seconds(), "x-openssl-sha256-client")
	report(fig.cmd.Seconds()/fig.cp.Seconds(), "x-cp")
	if py == "" {
		b.Logf("%s: left out", ltWhy)
	} else {
		b.Logf("seeder on %s: libtorrent: metadata after %.2f s, whole run %v", se, fig.ltMeta, fig.ltRun)
		report(fig.lt.Seconds(), "s/libtorrent-fetch")
		report(fig.ltRun.Seconds(), "s/libtorrent-run")
		report(fig.ltCPU.Seconds()/gib, "cpu-s/GiB-libtorrent-run")
		report(fig.cmd.Seconds()/fig.lt.Seconds(), "x-libtorrent")
		report(fig.lib.Seconds()/fig.lt.Seconds(), "x-libtorrent-client")
		report(fig.wireCmd.Seconds()/fig.lt.Seconds(), "x-libtorrent-wire")
		report(fig.wireLib.Seconds()/fig.lt.Seconds(), "x-libtorrent-client-wire")
	}
	if ariaErr != nil {
		b.Log("aria2c is not installed (Debian: aria2): left out")
	} else if fig.ariaTx > 0 {
		report(fig.ariaTx.Seconds(), "s/aria2-transfer")
		report(fig.cmd.Seconds()/fig.ariaTx.Seconds(), "x-aria2")
	}
}

// publishBig publishes version 1.0.0 of a folder holding one file "big"
// of size random bytes, with a relay client on ln that it closes after,
// and returns the client's data folder (which holds the bundle) and the
// bundle.
func publishBig(b *testing.B, ctx context.Context, ln *localnet.Net, key *signer.PrivateKey, size int64) (string, *transfer.Bundle) {
	src := b.TempDir()
	f, err := os.Create(filepath.Join(src, "big"))
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for range size >> 20 {
		rand.Read(buf)
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	dataDir := b.TempDir()
	c, err := relay.Open(ctx, relay.Config{DataDir: dataDir, Bootstrap: []string{ln.Bootstrap.Addr().String()}, Listen: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	p, err := c.Publish(ctx, relay.PublishOptions{
		Key: key, Version: record.MustParseVersion("1.0.0"),
		Sources: []transfer.Source{{Path: src}},
	})
	if err != nil {
		b.Fatal(err)
	}
	os.RemoveAll(src) // the bundle has its own copy
	return dataDir, p.Bundle
}

// timed returns how long f took, started after a sync so that the
// write-back of the files of the run before does not land in it.
func timed(b *testing.B, f func()) time.Duration {
	syscall.Sync()
	start := time.Now()
	f()
	return time.Since(start)
}

// run runs cmd to its end, failing b with its output if it fails.
func run(b *testing.B, cmd *exec.Cmd) {
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
}

// goSHA256 hashes the file at p with Go's crypto/sha256.
func goSHA256(b *testing.B, p string) {
	f, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := io.CopyBuffer(sha256.New(), f, make([]byte, 1<<20)); err != nil {
		b.Fatal(err)
	}
}

// waitStdoutFor starts cmd and waits for a line on its stdout holding s.
func waitStdoutFor(b *testing.B, cmd *exec.Cmd, s string, d time.Duration) {
	r, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	waitLine(b, cmd, r, func(l string) bool { return strings.Contains(l, s) }, d)
}

// waitStdout starts cmd and returns the first line it prints on stdout.
func waitStdout(b *testing.B, cmd *exec.Cmd, d time.Duration) string {
	r, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	return waitLine(b, cmd, r, func(string) bool { return true }, d)
}

func waitLine(b *testing.B, cmd *exec.Cmd, r io.Reader, ok func(string) bool, d time.Duration) string {
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if ok(sc.Text()) {
				select {
				case found <- strings.TrimSpace(sc.Text()):
				default:
				}
			}
		}
	}()
	select {
	case l := <-found:
		return l
	case <-time.After(d):
		b.Fatalf("%s printed nothing expected in %v", strings.Join(cmd.Args, " "), d)
	}
	return ""
}
