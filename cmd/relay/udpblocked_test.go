//go:build linux

package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/relay-sh/relay/internal/relaytest"
)

// noUDP makes a router drop every UDP packet it forwards, as a corporate
// firewall does: its site reaches the public side over TCP alone.
const noUDP = `table inet relaynoudp {
	chain forward {
		type filter hook forward priority 0; policy accept;
		meta l4proto udp drop
	}
}
`

// TestUDPBlocked: a host whose network drops UDP reaches no DHT node.
// There `relay fetch` and `relay watch` work through the HTTP relay that
// an organisation's `relay seed --http` serves on the public side (the
// record) and web seeds (the bundle), and `relay publish` stores through
// it into the DHT; with no relay, or a relay that does not answer, fetch
// says which path failed and how to give one.
func TestUDPBlocked(t *testing.T) {
	needNetLab(t)
	l := newNetLab(t, buildRelay(t), 1, false)
	l.exec([]byte(noUDP), "ip", "netns", "exec", l.id+"-r1", "nft", "-f", "-")
	wan, blocked := l.id+"-wan", l.id+"-h1"

	const relayAddr = wanAddr + ":8080"
	relayURL := "http://" + relayAddr
	l.start(t, public, "org", "seed", "--http", relayAddr)
	waitUntil(t, 30*time.Second, "relay seed --http to listen", func() bool {
		ok := false
		inNamespace(t, wan, func() {
			if c, err := net.DialTimeout("tcp", relayAddr, time.Second); err == nil {
				c.Close()
				ok = true
			}
		})
		return ok
	})

	// 1.0.0, published on the public side with a web seed there.
	pubDir := filepath.Join(l.dir, "pub")
	stdout, stderr, err := l.run(time.Minute, public, "pub", "init", "--key", "k.key")
	if err != nil || len(strings.Fields(stdout)) == 0 {
		t.Fatalf("init: %v\n%s", err, stderr)
	}
	key := strings.Fields(stdout)[len(strings.Fields(stdout))-1]
	ws := serveWebSeed(t, wan, wanAddr+":8081", filepath.Join(pubDir, "data"))
	release(t, pubDir, "v1", "app 1.0.0")
	if _, stderr, err := l.run(time.Minute, public, "pub", "publish", "--key", "k.key", "--version", "1.0.0", "--web-seed", ws, "--no-wait", "v1"); err != nil {
		t.Fatalf("publish: %v\n%s", err, stderr)
	}

	// Behind the firewall, with the relay: the record through it, the
	// bundle from the web seed.
	stdout, stderr, err = l.run(2*time.Minute, siteA, "fetcher", "--relays", relayURL, "fetch", "--out", "out", key)
	if err != nil {
		t.Fatalf("fetch behind the firewall: %v\n%s", err, stderr)
	}
	if got := mustRead(t, filepath.Join(l.dir, "fetcher", "out", "app")); got != "app 1.0.0" {
		t.Errorf("placed %q, stdout %s", got, stdout)
	}
	if want := "no DHT node answered; the record came from 1 of 1 HTTP relay"; !strings.Contains(stderr, want) {
		t.Errorf("fetch did not say %q:\n%s", want, stderr)
	}

	// Without a relay, or with one that is down: said plainly.
	_, stderr, err = l.run(2*time.Minute, siteA, "lost", "fetch", key)
	if err == nil || !strings.Contains(stderr, "no DHT node answered") || !strings.Contains(stderr, "--relays") {
		t.Errorf("fetch with no relay: %v\n%s", err, stderr)
	}
	_, stderr, err = l.run(2*time.Minute, siteA, "lost", "--relays", "http://"+wanAddr+":9", "fetch", key)
	if err == nil || !strings.Contains(stderr, "neither a DHT node nor a relay answered") || !strings.Contains(stderr, "relay: hint: check --relays") {
		t.Errorf("fetch with a relay that is down: %v\n%s", err, stderr)
	}

	// A watcher behind the firewall installs 2.0.0, which a publisher
	// behind it stored through the relay.
	watchDir := filepath.Join(l.dir, "watcher")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watch := l.command(ctx, siteA, "watcher", "--relays", relayURL, "watch", "--interval", "1s", "--out", "out", key)
	startUntilCleanup(t, watch, "watch")
	waitUntil(t, 2*time.Minute, "the watcher to install 1.0.0", func() bool {
		b, _ := os.ReadFile(filepath.Join(watchDir, "out", "app"))
		return string(b) == "app 1.0.0"
	})
	pub2 := filepath.Join(l.dir, "pub2")
	if err := os.MkdirAll(pub2, 0o755); err != nil {
		t.Fatal(err)
	}
	k, err := os.ReadFile(filepath.Join(pubDir, "k.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pub2, "k.key"), k, 0o600); err != nil {
		t.Fatal(err)
	}
	ws2 := serveWebSeed(t, blocked, siteHost(siteA)+":8082", filepath.Join(pub2, "data"))
	release(t, pub2, "v2", "app 2.0.0")
	if _, stderr, err := l.run(2*time.Minute, siteA, "pub2", "--relays", relayURL, "publish", "--key", "k.key", "--version", "2.0.0", "--web-seed", ws2, "--no-wait", "v2"); err != nil {
		t.Fatalf("publish behind the firewall: %v\n%s", err, stderr)
	}
	waitUntil(t, 2*time.Minute, "the watcher to install 2.0.0", func() bool {
		b, _ := os.ReadFile(filepath.Join(watchDir, "out", "app"))
		return string(b) == "app 2.0.0"
	})
	// The relay stored it in the DHT: a public client with no relay
	// resolves it.
	stdout, stderr, err = l.run(time.Minute, public, "check", "resolve", key)
	if err != nil || !strings.Contains(stdout, "version   2.0.0") {
		t.Errorf("resolve on the public side: %v\n%s%s", err, stdout, stderr)
	}
}

// release writes a release folder dir/name holding one file, app.
func release(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name, "app"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// serveWebSeed serves every bundle of the data folder dataDir as a BEP 19
// web seed on addr in network namespace ns until t ends, and returns its
// URL.
func serveWebSeed(t *testing.T, ns, addr, dataDir string) string {
	t.Helper()
	var ln net.Listener
	var err error
	inNamespace(t, ns, func() { ln, err = net.Listen("tcp", addr) })
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: relaytest.WebSeedHandler(dataDir)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + addr + "/"
}

// inNamespace runs fn on an OS thread that has joined the network
// namespace ns: a socket made there stays in ns, whichever thread uses it
// later. The thread ends with fn (it is never unlocked), so no other
// goroutine runs in ns.
func inNamespace(t *testing.T, ns string, fn func()) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open(filepath.Join("/var/run/netns", ns))
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		fn()
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatalf("join namespace %s: %v", ns, err)
	}
}
