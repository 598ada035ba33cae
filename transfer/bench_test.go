package transfer

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/relay-sh/relay/record"
)

// The big benchmarks move gigabytes; they run only when RELAY_BENCH_BIG is
// set (the Taskfile's bench target sets it), on top of -bench:
//
//	RELAY_BENCH_BIG=1 go test -run '^$' -bench . -benchtime 1x ./transfer/
//
// RELAY_BENCH_SIZE (MiB) changes the bundle size of BenchmarkFetch1GiB and
// RELAY_BENCH_PIECE (KiB) its piece length; RELAY_BENCH_CPUPROFILE names a
// file for a CPU profile of its fetches alone (go test's -cpuprofile also
// takes in making and hashing the bundle).
func bigBench(b *testing.B) {
	if os.Getenv("RELAY_BENCH_BIG") == "" {
		b.Skip("set RELAY_BENCH_BIG=1 to run the big benchmarks")
	}
}

func envInt(name string, def int64) int64 {
	if v, err := strconv.ParseInt(os.Getenv(name), 10, 64); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkFetch1GiB fetches a 1 GiB bundle from one local seeder and
// compares the time with `openssl dgst -sha256` of the same file, SHA-256
// with the CPU's extensions: the floor of a fetch that checks the file's
// SHA-256 (coreutils sha256sum has no SHA-NI here, and is 4 to 5 times
// slower).
func BenchmarkFetch1GiB(b *testing.B) {
	bigBench(b)
	if _, err := exec.LookPath("openssl"); err != nil {
		b.Skip("openssl is not installed (Debian: openssl): its dgst -sha256 is the floor this is timed against")
	}
	size := envInt("RELAY_BENCH_SIZE", 1024) << 20
	src := b.TempDir()
	file := filepath.Join(src, "app_linux_amd64")
	writeRandom(b, file, size, 42, 0o755)
	seedDir := b.TempDir()
	bundle, err := Make(context.Background(), MakeOptions{
		Dir: BundlesDir(seedDir), Sources: []Source{{Path: file}}, Key: testKey(b),
		Version: record.MustParseVersion("1.0.0"), Published: testTime,
		PieceLength: envInt("RELAY_BENCH_PIECE", 0) << 10,
	})
	if err != nil {
		b.Fatal(err)
	}
	// Every timed run starts with the disk's write-back done: the kernel
	// writes dirty pages of the last run (or of making the bundle) in the
	// background, up to 30 s later, taking CPU and disk from whatever runs
	// then.
	syscall.Sync()
	start := time.Now()
	if out, err := exec.Command("openssl", "dgst", "-sha256", file).CombinedOutput(); err != nil {
		b.Fatalf("openssl dgst -sha256: %v: %s", err, out)
	}
	shaTime := time.Since(start)
	s := newBenchClient(b, Config{DataDir: seedDir})
	if _, err := s.Seed(context.Background(), bundle.Infohash); err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir, err := os.MkdirTemp(src, "leecher-")
		if err != nil {
			b.Fatal(err)
		}
		l := newBenchClient(b, Config{DataDir: dir})
		syscall.Sync()
		stopProfile := startProfile(b)
		b.StartTimer()
		start := time.Now()
		var stages []string
		last := Stage(-1)
		if _, err := l.Fetch(context.Background(), FetchRequest{
			Key: testKey(b), Release: bundle.Release(testTime), Peers: peersOf(s),
			ProgressInterval: 100 * time.Millisecond,
			Progress: func(p Progress) {
				if p.Stage != last || os.Getenv("RELAY_BENCH_VERBOSE") != "" {
					stages = append(stages, fmt.Sprintf("%s@%v(%d MB)", p.Stage, time.Since(start).Round(time.Millisecond), p.Done>>20))
					last = p.Stage
				}
			},
		}); err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		total += took
		b.StopTimer()
		stopProfile()
		b.Logf("stages: %v", stages)
		if pc := l.store.check(bundle.Infohash); pc != nil {
			st := pc.hasher.Stats()
			b.Logf("hashed %d MB as written, %d MB from chunks kept, %d MB read back for pieces, %d MB for files",
				st.Streamed>>20, st.Buffered>>20, st.ReadBack>>20, pc.fileRead.Load()>>20)
		}
		l.Close()
		os.RemoveAll(dir)
		b.StartTimer()
	}
	per := total / time.Duration(b.N)
	b.ReportMetric(per.Seconds(), "s/fetch")
	b.ReportMetric(float64(size)/per.Seconds()/1e6, "MB/s")
	b.ReportMetric(shaTime.Seconds(), "s/openssl-sha256")
	b.ReportMetric(per.Seconds()/shaTime.Seconds(), "x-openssl-sha256")
	b.Logf("%d MiB, pieces of %d KiB: fetch %v, openssl dgst -sha256 %v, ratio %.2f", size>>20, bundle.PieceLength>>10, per, shaTime, per.Seconds()/shaTime.Seconds())
}

// BenchmarkSwarm16 has one seeder and 16 leechers fetch one bundle at
// once, every client's upload capped, and compares the time with the
// Kumar-Ross bound T_min = max(F/u_s, F/d_min, N*F/(u_s+sum u_i)) and with
// one server sending the bundle to each leecher at the seeder's cap,
// N*F/u_s. RELAY_BENCH_SWARM_SIZE (MiB, default 32) and
// RELAY_BENCH_SWARM_RATE (MB/s, default 5) change F and the cap. The
// defaults keep the 17 clients of one process within what two cores can
// hash, write and copy over loopback (about 16 s of CPU for 1 GiB moved);
// at 20 MB/s and 64 MiB the machine, not the swarm, sets the time.
// seed-copies is how many times over the seeder sent the bundle: the
// bound assumes once. RELAY_BENCH_SWARM_PIECE (KiB) and RELAY_BENCH_SEEDQ
// (Config.SeedRequests, -1 for none) compare other settings: 256 and -1
// are relay's before the seed cap. The time is the median of
// RELAY_BENCH_SWARM_ROUNDS rounds (default 3), each with new leechers.
func BenchmarkSwarm16(b *testing.B) { swarmBench(b, 0) }

// BenchmarkSwarm16RTT50ms is BenchmarkSwarm16 with a round trip of 50 ms
// between every two clients (delayLink): the bound, which leaves latency
// out, is the same.
func BenchmarkSwarm16RTT50ms(b *testing.B) { swarmBench(b, 50*time.Millisecond) }

func swarmBench(b *testing.B, rtt time.Duration) {
	bigBench(b)
	const n = 16
	size := envInt("RELAY_BENCH_SWARM_SIZE", 32) << 20
	rate := envInt("RELAY_BENCH_SWARM_RATE", 5) * 1e6
	src := b.TempDir()
	file := filepath.Join(src, "app_linux_amd64")
	writeRandom(b, file, size, 7, 0o755)
	seedDir := b.TempDir()
	bundle, err := Make(context.Background(), MakeOptions{
		Dir: BundlesDir(seedDir), Sources: []Source{{Path: file}}, Key: testKey(b),
		Version: record.MustParseVersion("1.0.0"), Published: testTime,
		PieceLength: envInt("RELAY_BENCH_SWARM_PIECE", 0) << 10,
	})
	if err != nil {
		b.Fatal(err)
	}
	F := float64(bundle.Size)
	us := float64(rate)
	tMin := max(F/us, n*F/(us+n*us)) // no download cap: F/d_min is 0
	tServer := n * F / us
	s := newBenchClient(b, Config{DataDir: seedDir, UploadRate: rate})
	if _, err := s.Seed(context.Background(), bundle.Infohash); err != nil {
		b.Fatal(err)
	}
	// Each of b.N iterations runs the swarm rounds times (default 3) and
	// the median round counts: one slow round on a shared machine does not
	// make the figure.
	rounds := int(envInt("RELAY_BENCH_SWARM_ROUNDS", 3))
	var total time.Duration
	var copies float64
	for i := 0; i < b.N; i++ {
		var tooks []time.Duration
		var ups []int64
		for r := range rounds {
			took, up := swarmRound(b, s, bundle, n, rate, src, rtt)
			b.Logf("run %d.%d: all done in %v; seeder sent %.1f MB (%.2f copies)", i, r, took, float64(up)/1e6, float64(up)/F)
			tooks, ups = append(tooks, took), append(ups, up)
		}
		slices.Sort(tooks)
		slices.Sort(ups)
		total += tooks[len(tooks)/2]
		copies += float64(ups[len(ups)/2]) / F
	}
	per := (total / time.Duration(b.N)).Seconds()
	b.ReportMetric(per, "s/swarm")
	b.ReportMetric(tMin, "s/T_min")
	b.ReportMetric(per/tMin, "x-T_min")
	b.ReportMetric(per/tServer, "x-server")
	b.ReportMetric(copies/float64(b.N), "seed-copies")
	b.Logf("F=%.1f MB, N=%d, caps %.0f MB/s: median %.2f s; T_min %.2f s (ratio %.2f); one server %.1f s (ratio %.3f)",
		F/1e6, n, us/1e6, per, tMin, per/tMin, tServer, per/tServer)
}

// swarmRound has n new leechers, each with its upload capped at rate,
// fetch bundle at once from the seeder s and each other, with a round
// trip of rtt between any two (none if zero), and returns the time until
// the last had it all and what s sent in the round.
func swarmRound(b *testing.B, s *Client, bundle *Bundle, n int, rate int64, tmp string, rtt time.Duration) (time.Duration, int64) {
	before, _ := s.Stats(bundle.Infohash)
	var ls []*Client
	for range n {
		dir, err := os.MkdirTemp(tmp, "leecher-")
		if err != nil {
			b.Fatal(err)
		}
		defer os.RemoveAll(dir)
		l := newBenchClient(b, Config{DataDir: dir, UploadRate: rate})
		defer l.Close()
		ls = append(ls, l)
	}
	all := append([]*Client{s}, ls...)
	peers := make([][]netip.AddrPort, n)
	for j := range ls {
		if rtt == 0 {
			peers[j] = peersOf(all...)
			continue
		}
		// Leecher j reaches every other client through a link of its
		// own, from 127.0.2.j+1.
		from := netip.AddrFrom4([4]byte{127, 0, 2, byte(j + 1)})
		for _, c := range all {
			if c != ls[j] {
				peers[j] = append(peers[j], newDelayLink(b, c.Addr(), from, rtt/2).Addr())
			}
		}
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for j, l := range ls {
		wg.Go(func() {
			_, errs[j] = l.Fetch(context.Background(), FetchRequest{Key: testKey(b), Release: bundle.Release(testTime), Peers: peers[j]})
		})
	}
	wg.Wait()
	took := time.Since(start)
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	after, _ := s.Stats(bundle.Infohash)
	return took, after.Uploaded - before.Uploaded
}

// startProfile starts a CPU profile into the file RELAY_BENCH_CPUPROFILE
// names, if it is set, and returns what stops it.
func startProfile(b *testing.B) (stop func()) {
	name := os.Getenv("RELAY_BENCH_CPUPROFILE")
	if name == "" {
		return func() {}
	}
	f, err := os.Create(name)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// newBenchClient is newClient with the library's logs silenced.
func newBenchClient(b *testing.B, cfg Config) *Client {
	cfg.Listen = "127.0.0.1:0"
	// RELAY_BENCH_SEEDQ sets Config.SeedRequests (-1: no cap) to compare.
	cfg.SeedRequests, _ = strconv.Atoi(os.Getenv("RELAY_BENCH_SEEDQ"))
	c, err := NewClient(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}
