//go:build linux

package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// The hosts of a netLab the cases use: the public side, and two sites
// behind their own NATs.
const (
	public = 0
	siteA  = 1
	siteB  = 2
)

// TestNAT runs real relay processes on either side of a NAT that accepts
// no inbound connection (a CI runner, a home network): whoever can only
// dial out must be the one that connects, and when neither side can be
// reached relay says so. Each reachable case's time against the same run
// with no NAT is BenchmarkNAT's.
func TestNAT(t *testing.T) {
	needNetLab(t)
	l := newNetLab(t, buildRelay(t), 2, true)
	t.Run("publisher_behind_NAT", func(t *testing.T) {
		c := newNATCase(t, l, "c1")
		c.publish(siteA, public)
		c.fetch(public, "check")
	})
	t.Run("fetcher_behind_NAT", func(t *testing.T) {
		c := newNATCase(t, l, "c2")
		c.publish(public, public)
		c.fetch(siteA, "fetch")
	})
	t.Run("seeder_behind_NAT", func(t *testing.T) {
		c := newNATCase(t, l, "c3")
		c.publish(public, siteA)
		c.fetchMany(public, 2)
	})
	t.Run("both_behind_NAT", func(t *testing.T) {
		c := newNATCase(t, l, "c4")
		c.seed(siteA)
		_, stderr, err := c.l.run(time.Minute, siteB, c.name+"-pub", c.publishArgs("12s")...)
		if err == nil {
			t.Fatalf("publish behind one NAT to a seeder behind another succeeded:\n%s", stderr)
		}
		t.Logf("publish said:\n%s", lastLines(stderr, 2))
		// The seeder dialled the publisher and the publisher the seeder:
		// both were dropped by the other's NAT.
		for _, want := range []string{
			"relay: error: timed out after 12s: 0 of 1 peer held the whole bundle",
			siteRouter(siteA) + ":", // the seeder, at its NAT's address
			"no peer connected to this machine",
			"relay: hint: the record is published; no path:",
		} {
			if !strings.Contains(stderr, want) {
				t.Errorf("publish's stderr lacks %q:\n%s", want, stderr)
			}
		}
		// Its own address, behind its NAT, is not among them.
		if self := siteRouter(siteB) + ":"; strings.Contains(lastLines(stderr, 2), self) {
			t.Errorf("publish names its own NAT's address %s as a peer:\n%s", self, stderr)
		}
	})
}

// TestNATNodeNotKept: a DHT node behind NAT (that of a seeder) answers the
// nodes it has just queried, through the NAT's state for that flow, but
// no other. It must not be kept in their routing tables as a good node,
// which they would hand out: every public process's lookups would then
// query it and wait in vain (a resolve took 1 s instead of 10 ms). It
// says it is read-only (BEP 43) once it sees that answers come to another
// address than its own; its own lookups work as before (TestNAT).
func TestNATNodeNotKept(t *testing.T) {
	needNetLab(t)
	l := newNetLab(t, buildRelay(t), 1, true)
	c := newNATCase(t, l, "n")
	c.seed(siteA)
	joined := filepath.Join(l.dir, c.name+"-seed", "data", "dht-nodes")
	waitUntil(t, 30*time.Second, "the seeder behind NAT to join the DHT", func() bool {
		_, err := os.Stat(joined)
		return err == nil
	})
	// The seeder queries the bootstrap node every second or so (its
	// lookups), and the bootstrap node pings every node that queries it
	// unless it is read-only: give it the time.
	stats := regexp.MustCompile(`msg="joined the dht".* queried=(\d+) answered=(\d+)`)
	for range 4 {
		time.Sleep(500 * time.Millisecond)
		_, stderr, _ := l.run(time.Minute, public, "resolve", "-v", "resolve", c.key)
		m := stats.FindStringSubmatch(stderr)
		if m == nil {
			t.Fatalf("a public resolve logged no join:\n%s", stderr)
		}
		if m[1] != m[2] {
			t.Fatalf("a public resolve's join queried %s nodes and %s answered: it was given the seeder behind NAT\n%s", m[1], m[2], stderr)
		}
	}
}

// waitUntil polls cond until it holds, failing t after limit.
func waitUntil(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(limit); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// BenchmarkNAT times each reachable case of TestNAT behind NAT and with
// no NAT (the same topology, routed both ways), as seconds a case: the
// publish until a seeder holds the bundle, a fetch, and two fetches at
// once from a seeder behind NAT. Run it with -benchtime 1x (a case takes
// seconds).
func BenchmarkNAT(b *testing.B) {
	needNetLab(b)
	bin := buildRelay(b)
	for _, nat := range []bool{false, true} {
		l := newNetLab(b, bin, 1, nat)
		mode := "direct"
		if nat {
			mode = "nat"
		}
		var pub, fetch, seed []time.Duration
		for i := range b.N {
			c := newNATCase(b, l, fmt.Sprintf("p%d", i))
			pub = append(pub, c.publish(siteA, public))
			c = newNATCase(b, l, fmt.Sprintf("f%d", i))
			c.publish(public, public)
			fetch = append(fetch, c.fetch(siteA, "fetch"))
			c = newNATCase(b, l, fmt.Sprintf("s%d", i))
			c.publish(public, siteA)
			seed = append(seed, c.fetchMany(public, 2))
		}
		for _, m := range []struct {
			name string
			ds   []time.Duration
		}{{"publish", pub}, {"fetch", fetch}, {"fetch-from-seeder", seed}} {
			var sum time.Duration
			for _, d := range m.ds {
				sum += d
			}
			b.ReportMetric(sum.Seconds()/float64(len(m.ds)), "s/"+m.name+"-"+mode)
			b.Logf("%s, %s: %v", m.name, mode, m.ds)
		}
	}
}

// A natCase is one release: its key, its files, and the relay processes
// that publish, seed and fetch it, each with a data folder of its own.
type natCase struct {
	t    testing.TB
	l    *netLab
	name string
	key  string
	data []byte
}

func newNATCase(t testing.TB, l *netLab, name string) *natCase {
	t.Helper()
	c := &natCase{t: t, l: l, name: name, data: make([]byte, 256<<10)}
	rand.Read(c.data)
	stdout, stderr, err := l.run(time.Minute, public, name+"-pub", "init", "--key", "k.key")
	if err != nil {
		t.Fatalf("relay init: %v\n%s", err, stderr)
	}
	c.key = strings.TrimSpace(stdout)
	rel := filepath.Join(l.dir, name+"-pub", "rel")
	if err := os.MkdirAll(rel, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rel, "app"), c.data, 0o644); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *natCase) publishArgs(timeout string) []string {
	return []string{"-v", "publish", "--key", "k.key", "--version", "1.0.0", "--timeout", timeout, "rel"}
}

// seed starts a seeder following the case's key on host k.
func (c *natCase) seed(k int) {
	c.l.start(c.t, k, c.name+"-seed", "-v", "seed", "--follow", c.key, "--interval", "1s")
}

// publish starts a seeder on host seeder and publishes from host pub; it
// returns how long the publish took, until the seeder held the bundle.
func (c *natCase) publish(pub, seeder int) time.Duration {
	c.t.Helper()
	c.seed(seeder)
	start := time.Now()
	_, stderr, err := c.l.run(2*time.Minute, pub, c.name+"-pub", c.publishArgs("60s")...)
	took := time.Since(start)
	if err != nil {
		c.t.Fatalf("relay publish: %v\n%s", err, stderr)
	}
	c.logf("%s: publish took %v", c.name, took.Round(time.Millisecond))
	return took
}

// fetch fetches the release on host k, checks what it placed and returns
// how long it took.
func (c *natCase) fetch(k int, name string) time.Duration {
	c.t.Helper()
	start := time.Now()
	_, stderr, err := c.l.run(2*time.Minute, k, c.name+"-"+name, "-v", "fetch", c.key, "--out", "out", "--timeout", "30s")
	took := time.Since(start)
	if err != nil {
		c.t.Fatalf("relay fetch: %v\n%s", err, stderr)
	}
	got, err := os.ReadFile(filepath.Join(c.l.dir, c.name+"-"+name, "out", "app"))
	if err != nil {
		c.t.Fatal(err)
	}
	if !bytes.Equal(got, c.data) {
		c.t.Fatalf("fetch placed %d bytes that differ from the %d published", len(got), len(c.data))
	}
	c.logf("%s: fetch on host %d took %v", c.name, k, took.Round(time.Millisecond))
	return took
}

// fetchMany runs n fetches at once on host k and returns how long the
// slowest took.
func (c *natCase) fetchMany(k, n int) time.Duration {
	c.t.Helper()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []string
		most time.Duration
	)
	for i := range n {
		wg.Go(func() {
			name := fmt.Sprintf("%s-fetch%d", c.name, i)
			start := time.Now()
			_, stderr, err := c.l.run(2*time.Minute, k, name, "-v", "fetch", c.key, "--out", "out", "--timeout", "30s")
			took := time.Since(start)
			var got []byte
			if err == nil {
				got, err = os.ReadFile(filepath.Join(c.l.dir, name, "out", "app"))
			}
			mu.Lock()
			defer mu.Unlock()
			most = max(most, took)
			switch {
			case err != nil:
				errs = append(errs, fmt.Sprintf("%s: %v\n%s", name, err, stderr))
			case !bytes.Equal(got, c.data):
				errs = append(errs, name+": placed bytes that differ from the published")
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		c.t.Fatalf("relay fetch:\n%s", strings.Join(errs, "\n"))
	}
	c.logf("%s: %d fetches on host %d took %v", c.name, n, k, most.Round(time.Millisecond))
	return most
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// logf logs the time of a step in a test; a benchmark sums them up.
func (c *natCase) logf(format string, args ...any) {
	c.t.Helper()
	if _, bench := c.t.(*testing.B); !bench {
		c.t.Logf(format, args...)
	}
}
