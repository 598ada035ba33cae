package interop

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/dht/localnet"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/transfer"
)

// jsDir holds the Node helper and its pinned npm dependencies.
var jsDir, _ = filepath.Abs(filepath.Join("testdata", "js"))

var npmOnce sync.Once

// jsPackages are the npm packages the Node helpers import, pinned by
// testdata/js/package-lock.json.
var jsPackages = []string{"bittorrent-dht", "dns-packet", "pkarr"}

// jsInstalled says whether every one of jsPackages is in node_modules.
func jsInstalled() bool {
	for _, p := range jsPackages {
		if !jsPackage(p) {
			return false
		}
	}
	return true
}

// jsPackage says whether npm package p is in node_modules.
func jsPackage(p string) bool {
	_, err := os.Stat(filepath.Join(jsDir, "node_modules", p, "package.json"))
	return err == nil
}

// needNode skips t unless node and the npm packages in testdata/js are
// there; it runs npm ci once when they are not installed yet.
func needNode(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed: the BEP 44, pkarr and DNS interop tests need Node.js 18 or later and npm")
	}
	npmOnce.Do(func() {
		if jsInstalled() {
			return
		}
		cmd := exec.Command("npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund")
		cmd.Dir = jsDir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Logf("npm ci in %s: %v\n%s", jsDir, err, out)
		}
	})
	if !jsInstalled() {
		t.Skipf("npm packages %v not installed in %s and npm ci failed: run npm ci there", jsPackages, jsDir)
	}
}

// node runs bep44.js with args and decodes the JSON it prints into v.
func node(t testing.TB, ctx context.Context, v any, args ...string) {
	t.Helper()
	nodeScript(t, ctx, v, "bep44.js", args...)
}

// nodeScript runs the Node helper script in testdata/js with args and
// decodes the JSON it prints into v.
func nodeScript(t testing.TB, ctx context.Context, v any, script string, args ...string) {
	t.Helper()
	nodeScriptArgs(t, ctx, v, nil, script, args...)
}

// nodeScriptArgs is nodeScript with node's own arguments before the
// script.
func nodeScriptArgs(t testing.TB, ctx context.Context, v any, nodeArgs []string, script string, args ...string) {
	t.Helper()
	all := append(append(slices.Clone(nodeArgs), filepath.Join(jsDir, script)), args...)
	cmd := exec.CommandContext(ctx, "node", all...)
	cmd.Dir = jsDir
	runJSON(t, cmd, "node "+script+" "+args[0], v)
}

// runJSON runs cmd, a helper that prints one JSON object on stdout, and
// decodes that object into v. name names cmd in failures, which carry what
// it wrote to stderr.
func runJSON(t testing.TB, cmd *exec.Cmd, name string, v any) {
	t.Helper()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", name, err, stderr.Bytes())
	}
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("%s printed %q: %v", name, out, err)
	}
}

// needAria2 returns the path of aria2c or skips t.
func needAria2(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("aria2c")
	if err != nil {
		t.Skip("aria2c is not installed (Debian: apt-get install aria2): the BitTorrent interop tests need it")
	}
	return p
}

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// client opens a relay client with its own data folder on net.
func client(t testing.TB, net *localnet.Net, readOnly bool) *relay.Client {
	t.Helper()
	return openClient(t, net, relay.Config{ReadOnly: readOnly})
}

// testEngine is the BitTorrent engine of the clients openClient opens
// when their config names none: RELAY_ENGINE=wire runs them on relay's
// own (transfer.EngineWire), as it does the relay processes, which
// inherit it.
var testEngine = func() transfer.Engine {
	e, err := transfer.ParseEngine(os.Getenv("RELAY_ENGINE"))
	if err != nil {
		panic(fmt.Sprintf("RELAY_ENGINE: %v", err))
	}
	return e
}()

// openClient opens a relay client of cfg on net, with its own data folder
// and a random port on 127.0.0.1, on testEngine unless cfg names an
// engine; it is closed when t ends.
func openClient(t testing.TB, net *localnet.Net, cfg relay.Config) *relay.Client {
	t.Helper()
	if cfg.Engine == transfer.EngineTorrent {
		cfg.Engine = testEngine
	}
	cfg.DataDir = t.TempDir()
	cfg.Bootstrap = []string{net.Bootstrap.Addr().String()}
	cfg.Listen = "127.0.0.1:0"
	c, err := relay.Open(ctxFor(t, 30*time.Second), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// keptLog returns a logger of every level, the torrent library's debug
// logs included, that keeps what it is given and writes it to t's log if
// t failed, once the cleanups registered after it (a client's Close) ran.
func keptLog(t testing.TB, name string) *slog.Logger {
	var b lockedBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s log:\n%s", name, b.String())
		}
	})
	return slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newKey(t testing.TB) *signer.PrivateKey {
	t.Helper()
	k, err := signer.Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// releaseDir writes a release folder of files of the given sizes, random
// bytes, named file0, file1...
func releaseDir(t testing.TB, sizes ...int) string {
	t.Helper()
	dir := t.TempDir()
	for i, n := range sizes {
		b := make([]byte, n)
		rand.Read(b)
		if err := os.WriteFile(filepath.Join(dir, "file"+string(rune('0'+i))), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// sameTree fails t unless every regular file under want is under got with
// the same bytes, and got has no other files.
func sameTree(t *testing.T, want, got string) {
	t.Helper()
	seen := map[string]bool{}
	filepath.WalkDir(want, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		seen[rel] = true
		w, _ := os.ReadFile(p)
		g, err := os.ReadFile(filepath.Join(got, rel))
		if err != nil {
			t.Errorf("%s: %v", rel, err)
		} else if !bytes.Equal(w, g) {
			t.Errorf("%s: %d bytes differ from the %d published", rel, len(g), len(w))
		}
		return nil
	})
	filepath.WalkDir(got, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(got, p)
		if !seen[rel] {
			t.Errorf("%s: not in the bundle", rel)
		}
		return nil
	})
}

var relayBin struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// buildRelay builds the relay command once, static as users get it.
func buildRelay(b testing.TB) string {
	relayBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "relay-interop")
		if err != nil {
			relayBin.err = err
			return
		}
		relayBin.dir = dir
		relayBin.path = filepath.Join(dir, "relay")
		cmd := exec.Command("go", "build", "-o", relayBin.path, "../cmd/relay")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			relayBin.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if relayBin.err != nil {
		b.Fatal(relayBin.err)
	}
	return relayBin.path
}

// TestMain removes the relay command buildRelay built.
func TestMain(m *testing.M) {
	code := m.Run()
	if relayBin.dir != "" {
		os.RemoveAll(relayBin.dir)
	}
	os.Exit(code)
}

// runRelay returns the relay command with the local network's bootstrap
// node and dataDir, for the caller to start; when b ends, it stops it with
// SIGINT if it is still running and nobody waited for it.
func runRelay(b testing.TB, ln *localnet.Net, dataDir string, args ...string) *exec.Cmd {
	cmd := exec.Command(buildRelay(b), args...)
	cmd.Env = append(os.Environ(),
		"RELAY_DATA_DIR="+dataDir,
		"RELAY_BOOTSTRAP="+ln.Bootstrap.Addr().String(),
		"RELAY_LISTEN=127.0.0.1:0")
	name := "relay"
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			name += " " + a // the command, after any global flags
			break
		}
	}
	b.Cleanup(func() {
		if cmd.Process == nil || cmd.ProcessState != nil {
			return
		}
		start := time.Now()
		defer func() { b.Logf("%s stopped %v after SIGINT", name, time.Since(start)) }()
		cmd.Process.Signal(syscall.SIGINT)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return cmd
}
