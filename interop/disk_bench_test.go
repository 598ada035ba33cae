package interop

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/dht/localnet"
)

// BenchmarkDiskFiveReleases: five successive releases of one program (20
// MB; 200 MB with RELAY_BENCH_BIG=1), each published by `relay publish
// --keep 2` and installed by a running `relay watch --install`. It reports
// each data folder at the end (everything in it, as du counts it: a file
// shared by two bundles once) as a multiple of one release: the watcher's
// (it keeps the installed release's bundle: 1×) and the publisher's (it
// keeps 2 releases; target: at most 1.5×). Before relay pruned, both kept
// all five (5×).
//
// "program" is a program as it is released: its executable (15% of the
// bytes) is rebuilt every release and differs throughout; of its eight
// libraries (5% each), one changes per release; its data files (45%) stay
// the same. 20% of the bytes change from one release to the next, and the
// publisher's kept releases share the rest (transfer.Make links the same
// files). "every-byte" is the worst case: every file differs throughout in
// every release, and the publisher keeps two whole copies.
func BenchmarkDiskFiveReleases(b *testing.B) {
	size := 20 << 20
	if os.Getenv("RELAY_BENCH_BIG") != "" {
		size = 200e6
	}
	b.Run("program", func(b *testing.B) { diskFiveReleases(b, size, false) })
	b.Run("every-byte", func(b *testing.B) { diskFiveReleases(b, size, true) })
}

// programFile is one file of the program diskFiveReleases releases:
// share, its part of the release's bytes in percent; changed, whether
// release i changes it.
type programFile struct {
	path    string
	share   int
	changed func(i int) bool
}

func programFiles() []programFile {
	exe := fmt.Sprintf("app_%s_%s", runtime.GOOS, runtime.GOARCH)
	files := []programFile{{exe, 15, func(int) bool { return true }}}
	for k := range 8 {
		files = append(files, programFile{fmt.Sprintf("lib/lib%d.so", k), 5, func(i int) bool { return i%8 == k }})
	}
	for k := range 9 {
		files = append(files, programFile{fmt.Sprintf("share/data%d.pak", k), 5, func(int) bool { return false }})
	}
	return files
}

func diskFiveReleases(b *testing.B, size int, everyByte bool) {
	ln := localnet.ForTest(b, localnet.Config{Nodes: 8})
	work := b.TempDir()
	pubDir, watchDir := filepath.Join(work, "pub"), filepath.Join(work, "watch")
	keyFile := filepath.Join(work, "k.key")
	out, err := runRelay(b, ln, pubDir, "init", "--key", keyFile).Output()
	if err != nil {
		b.Fatalf("relay init: %v", err)
	}
	pub := string(bytes.TrimSpace(out))
	install := filepath.Join(work, "app")
	watch := runRelay(b, ln, watchDir, "-q", "watch", pub, "--interval", "300ms", "--install", install)
	if err := watch.Start(); err != nil {
		b.Fatal(err)
	}
	files := programFiles()
	version := make([]int, len(files)) // the release each file last changed in
	start := time.Now()
	for i := 1; i <= 5; i++ {
		rel := filepath.Join(work, fmt.Sprintf("rel%d", i))
		head := make([]byte, 4096)
		rand.Read(head)
		for k, f := range files {
			if i == 1 || everyByte || f.changed(i) {
				version[k] = i
			}
			p := filepath.Join(rel, filepath.FromSlash(f.path))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				b.Fatal(err)
			}
			var h []byte
			if k == 0 {
				h = head // the executable: the watcher's install is told by it
			}
			writeProgram(b, p, h, uint64(k)<<32|uint64(version[k]), size/100*f.share)
		}
		v := fmt.Sprintf("1.%d.0", i)
		if out, err := runRelay(b, ln, pubDir, "-q", "publish", "--key", keyFile, "--version", v, "--keep", "2",
			"--timeout", "5m", rel).CombinedOutput(); err != nil {
			b.Fatalf("relay publish %s: %v\n%s", v, err, out)
		}
		// Installed, and the watcher's older bundle gone.
		waitUntil(b, 2*time.Minute, "relay watch installed "+v+" and kept one bundle", func() bool {
			f, err := os.Open(install)
			if err != nil {
				return false
			}
			defer f.Close()
			got := make([]byte, len(head))
			if _, err := io.ReadFull(f, got); err != nil || !bytes.Equal(got, head) {
				return false
			}
			u, err := relay.ListData(watchDir, relay.PruneOptions{})
			return err == nil && len(u.Bundles) == 1 && u.Bundles[0].Version.String() == v
		})
		os.RemoveAll(filepath.Join(work, fmt.Sprintf("rel%d", i-1)))
	}
	b.Logf("five releases of %d MB published and installed in %v", size/1e6, time.Since(start).Round(time.Second))
	// Written blocks are counted as the file system holds them once
	// written back, not with what it reserves while they are in memory.
	syscall.Sync()
	for _, d := range []struct{ role, dir string }{{"watch", watchDir}, {"publish", pubDir}} {
		u, err := relay.ListData(d.dir, relay.PruneOptions{})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(u.Bytes)/float64(size), "x-release-"+d.role)
		b.ReportMetric(float64(u.Bytes)/1e6, "MB-"+d.role)
		b.ReportMetric(float64(len(u.Bundles)), "bundles-"+d.role)
	}
}

// writeProgram writes a file of size bytes: head, then bytes drawn from
// seed (the same seed, the same bytes).
func writeProgram(b *testing.B, p string, head []byte, seed uint64, size int) {
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(head); err != nil {
		b.Fatal(err)
	}
	r := mrand.NewChaCha8([32]byte{0: byte(seed), 1: byte(seed >> 8), 4: byte(seed >> 32), 5: byte(seed >> 40)})
	if _, err := io.CopyN(f, r, int64(size-len(head))); err != nil {
		b.Fatal(err)
	}
}

// waitUntil polls ok until it holds, or fails b after limit.
func waitUntil(b *testing.B, limit time.Duration, what string, ok func() bool) {
	b.Helper()
	for deadline := time.Now().Add(limit); !ok(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("not within %v: %s", limit, what)
		}
	}
}
