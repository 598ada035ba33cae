package peerwire

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"

	"github.com/relay-sh/relay/dht/localnet"
)

// seedEnv, set to "<folder> <name>", makes the test binary a seeder: the
// torrent library's client seeding <folder>/<name>.torrent from the files
// under <folder>, in a process of its own (as `relay seed` runs it). It
// prints its address and seeds until its stdin closes.
const seedEnv = "PEERWIRE_TEST_SEED"

func TestMain(m *testing.M) {
	if v := os.Getenv(seedEnv); v != "" {
		if err := seedProcess(v); err != nil {
			fmt.Fprintln(os.Stderr, "seeder:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func seedProcess(v string) error {
	root, name, _ := strings.Cut(v, " ")
	mi, err := metainfo.LoadFromFile(filepath.Join(root, name+".torrent"))
	if err != nil {
		return err
	}
	cl, err := anacrolixSeeder(root, mi.InfoBytes, 0)
	if err != nil {
		return err
	}
	defer cl.Close()
	fmt.Println(cl.ListenAddrs()[0])
	bufio.NewReader(os.Stdin).ReadString('\n') // until stdin closes
	return nil
}

// seederProcess starts a seeder process for b and returns its address; it
// stops when the benchmark ends.
func seederProcess(b *testing.B, bu *bundle) string {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), seedEnv+"="+bu.root+" "+bu.Name)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		b.Fatalf("seeder process: %v", err)
	}
	return strings.TrimSpace(line)
}

// peerwireRun fetches bu's info and pieces from seed with this package,
// into new files, timed as name.
func peerwireRun(b *testing.B, ctx context.Context, bu *bundle, seed, name string, inProcess func(string, func()), o DownloadOptions) {
	dir := b.TempDir()
	defer os.RemoveAll(dir)
	o.Peers = []string{seed}
	inProcess(name, func() {
		c := New(Config{})
		info, err := c.FetchInfo(ctx, bu.info2hash(), o.Peers, nil)
		if err != nil {
			b.Fatal(err)
		}
		files, err := CreateFiles(dir, bu.info)
		if err != nil {
			b.Fatal(err)
		}
		defer files.Close()
		tor, err := c.Add(info, files, TorrentOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if err := tor.Download(ctx, o); err != nil {
			b.Fatal(err)
		}
	})
	sameFiles(b, bu, dir)
}

// fileOf returns the offset in bu's torrent of the file at path, its
// length and its SHA-256.
func fileOf(b *testing.B, bu *bundle, path string) (off, size int64, sum []byte) {
	for _, fi := range bu.info.Files {
		if strings.Join(fi.Path, "/") == path {
			f, err := os.Open(filepath.Join(bu.root, bu.Name, filepath.FromSlash(path)))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			h := sha256.New()
			if _, err := io.Copy(h, f); err != nil {
				b.Fatal(err)
			}
			return off, fi.Length, h.Sum(nil)
		}
		off += fi.Length
	}
	b.Fatalf("no file %s in the bundle", path)
	return 0, 0, nil
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPeerwireVsClients: a bundle of one file (64 MiB; 1 GiB with
// RELAY_BENCH_BIG=1, with relay's piece length for it) seeded by the
// torrent library's client in a process of its own, as `relay seed` seeds
// it, fetched in turn by:
//
//   - this package (FetchInfo and Download into new files, in this
//     process, the seeder's address given), and the same with the pieces
//     in order into a SHA-256 of the file, checked against the file's, as
//     a verified fetch runs it (peerwire-sha256);
//   - libtorrent (lt.py fetch over TCP, the magnet link and the seeder's
//     address given; timed by lt.py from adding the magnet link to every
//     piece checked, and as a whole run for its CPU time);
//
// beside the disk's floors: writing the file's length from memory into a
// new file (1 MiB at a time, as a download writes pieces), and `cp` of the
// file. relay's own fetch on either engine (transfer.Client, which
// imports this package) is measured beside these by the interop package's
// BenchmarkFetchVsClients. Wall times are the best of RELAY_BENCH_ROUNDS
// rounds (default 2), CPU times (user and system) per GiB those of the
// same best rounds' processes: of this process for the two in-process
// fetches, the seeder excluded.
func BenchmarkPeerwireVsClients(b *testing.B) {
	size := int64(64 << 20)
	if os.Getenv("RELAY_BENCH_BIG") != "" {
		size = 1 << 30
	}
	rounds := 2
	if n, err := strconv.Atoi(os.Getenv("RELAY_BENCH_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	pieceLen := int64(64 << 10) // relay's (transfer.ChoosePieceLength)
	if size > 512<<20 {
		pieceLen = 1 << 20
	}
	bu := makeBundle(b, map[string]int64{"big": size}, pieceLen)
	seed := seederProcess(b, bu)
	ctx := ctxFor(b, 30*time.Minute)
	py := ltPython()
	var ln *localnet.Net
	if py != "" {
		ln = localnet.ForTest(b, localnet.Config{Nodes: 2})
	}
	type fig struct{ wall, cpu time.Duration }
	best := map[string]*fig{}
	better := func(name string, wall, cpu time.Duration) {
		if f := best[name]; f == nil || wall < f.wall {
			best[name] = &fig{wall, cpu}
		}
	}
	inProcess := func(name string, f func()) {
		syscall.Sync()
		cpu0, start := cpuTime(b), time.Now()
		f()
		better(name, time.Since(start), cpuTime(b)-cpu0)
	}
	for round := range rounds {
		peerwireRun(b, ctx, bu, seed, "peerwire", inProcess, DownloadOptions{})
		// As a verified fetch will run it: the pieces in order, into a
		// SHA-256 of the file as they come (the manifest's check).
		off, length, want := fileOf(b, bu, "big")
		h := sha256.New()
		peerwireRun(b, ctx, bu, seed, "peerwire-sha256", inProcess, DownloadOptions{
			InOrder: true,
			OnPiece: func(i int, data []byte) error {
				start := int64(i) * bu.info.PieceLength
				lo, hi := max(start, off), min(start+int64(len(data)), off+length)
				if lo < hi {
					h.Write(data[lo-start : hi-start])
				}
				return nil
			},
		})
		if sum := h.Sum(nil); !bytes.Equal(sum, want) {
			b.Fatalf("the pieces in order hash to %x, the file to %x", sum, want)
		}

		if py != "" {
			out := b.TempDir()
			cmd := exec.CommandContext(ctx, py, ltScript, "fetch", ln.Bootstrap.Addr().String(), bu.Magnet(), out, seed)
			cmd.Env = append(os.Environ(), "LT_TCP=1")
			cmd.Stderr = os.Stderr
			syscall.Sync()
			start := time.Now()
			got, err := cmd.Output()
			run := time.Since(start)
			var res struct{ Seconds float64 }
			if err != nil || json.Unmarshal(got, &res) != nil {
				b.Fatalf("lt.py fetch: %v: %s", err, got)
			}
			cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
			better("libtorrent", time.Duration(res.Seconds*float64(time.Second)), cpu)
			better("libtorrent-run", run, cpu)
			os.RemoveAll(out)
		}

		// The disk's floor: the file's bytes written from memory into a
		// new file, 1 MiB at a time, as a download writes its pieces.
		inProcess("write", func() {
			f, err := os.Create(filepath.Join(b.TempDir(), "written"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			buf := make([]byte, 1<<20)
			for off := int64(0); off < size; off += int64(len(buf)) {
				if _, err := f.WriteAt(buf, off); err != nil {
					b.Fatal(err)
				}
			}
		})

		cp := exec.Command("cp", filepath.Join(bu.root, bu.Name, "big"), filepath.Join(b.TempDir(), "copy"))
		syscall.Sync()
		start := time.Now()
		if out, err := cp.CombinedOutput(); err != nil {
			b.Fatalf("cp: %v: %s", err, out)
		}
		better("cp", time.Since(start), cp.ProcessState.UserTime()+cp.ProcessState.SystemTime())
		b.Logf("round %d (best so far): peerwire %v (with SHA-256 %v), libtorrent %v, write %v, cp %v", round+1,
			best["peerwire"].wall, best["peerwire-sha256"].wall, best["libtorrent"], best["write"].wall, best["cp"].wall)
	}
	gib := float64(size) / (1 << 30)
	for _, name := range []string{"peerwire", "peerwire-sha256", "libtorrent-run", "write", "cp"} {
		if f := best[name]; f != nil {
			b.ReportMetric(f.wall.Seconds(), "s/"+name)
			b.ReportMetric(f.cpu.Seconds()/gib, "cpu-s/GiB-"+name)
		}
	}
	pw := best["peerwire"].wall.Seconds()
	b.ReportMetric(pw/best["cp"].wall.Seconds(), "x-cp")
	b.ReportMetric(pw/best["write"].wall.Seconds(), "x-write")
	if f := best["libtorrent"]; f != nil {
		b.ReportMetric(f.wall.Seconds(), "s/libtorrent")
		b.ReportMetric(pw/f.wall.Seconds(), "x-libtorrent")
		b.ReportMetric(best["peerwire-sha256"].wall.Seconds()/f.wall.Seconds(), "x-libtorrent-sha256")
	} else {
		b.Log("python3-libtorrent is not installed: libtorrent left out")
	}
}
