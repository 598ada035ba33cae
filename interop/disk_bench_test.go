package interop

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/dht/localnet"
)

// BenchmarkDiskFiveReleases: five successive releases of one program (20
// MB; 200 MB with RELAY_BENCH_BIG=1), each published by `relay publish
// --keep 2` and installed by a running `relay watch --install`. It reports
// each data folder at the end (everything in it, as du counts it) as a
// multiple of one release: the watcher's (target: at most 1.5×; it keeps
// the installed release's bundle) and the publisher's (it keeps 2
// releases: about 2×). Before relay pruned, both kept all five (5×).
func BenchmarkDiskFiveReleases(b *testing.B) {
	size := 20 << 20
	if os.Getenv("RELAY_BENCH_BIG") != "" {
		size = 200e6
	}
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
	name := fmt.Sprintf("app_%s_%s", runtime.GOOS, runtime.GOARCH)
	start := time.Now()
	for i := 1; i <= 5; i++ {
		rel := filepath.Join(work, fmt.Sprintf("rel%d", i))
		head := make([]byte, 4096)
		rand.Read(head)
		if err := os.MkdirAll(rel, 0o755); err != nil {
			b.Fatal(err)
		}
		writeProgram(b, filepath.Join(rel, name), head, size)
		v := fmt.Sprintf("1.%d.0", i)
		if out, err := runRelay(b, ln, pubDir, "-q", "publish", "--key", keyFile, "--version", v, "--keep", "2",
			"--timeout", "5m", filepath.Join(rel, name)).CombinedOutput(); err != nil {
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
	}
	b.Logf("five releases of %d MB published and installed in %v", size/1e6, time.Since(start).Round(time.Second))
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

// writeProgram writes a file of size bytes: head, then random bytes.
func writeProgram(b *testing.B, p string, head []byte, size int) {
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(head); err != nil {
		b.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, int64(size-len(head))); err != nil {
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
