package update_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/storage"

	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/httprelay"
	"github.com/relay-sh/relay/internal/relaytest"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/transfer"
	"github.com/relay-sh/relay/update"
)

// requests counts the requests an HTTP server in a test was sent, by host
// and path.
type requests struct {
	mu   sync.Mutex
	seen map[string]int
}

func (r *requests) add(host, path string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[string]int{}
	}
	r.seen[host+path]++
}

// count returns how many requests were sent to host for path, or for any
// path when path is empty.
func (r *requests) count(host, path string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for k, c := range r.seen {
		if k == host+path || path == "" && strings.HasPrefix(k, host+"/") {
			n += c
		}
	}
	return n
}

// forwardProxy runs an HTTP forward proxy on 127.0.0.1 until t ends and
// returns its URL. It forwards a request for one of hosts' names to the
// address the name maps to, and answers any other with 502: the names
// exist only through it. It counts what it forwards.
func forwardProxy(t *testing.T, hosts map[string]string) (*url.URL, *requests) {
	t.Helper()
	seen := &requests{}
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.Out.URL.Scheme = "http"
		pr.Out.URL.Host = hosts[pr.In.URL.Host]
	}}
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Host == "" || hosts[r.URL.Host] == "" {
			http.Error(w, "unknown host", http.StatusBadGateway)
			return
		}
		seen.add(r.URL.Host, r.URL.Path)
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	u, _ := url.Parse(s.URL)
	return u, seen
}

// updater returns an updater of a new executable of version 1.0.0
// following key on the local DHT, with a data folder of its own, its
// configuration changed by set; and the executable's path.
func updater(t *testing.T, key signer.PublicKey, set func(*update.Config)) (*update.Updater, string) {
	t.Helper()
	exe := writeFile(t, t.TempDir(), "app", "app 1.0.0", 0o755)
	cfg := update.Config{
		Key:        key,
		Version:    record.MustParseVersion("1.0.0"),
		Executable: exe,
		Bootstrap:  []string{bootstrap(t)},
		Listen:     "127.0.0.1:0",
		DataDir:    t.TempDir(),
		Logger:     testLogger(t),
	}
	set(&cfg)
	u, err := update.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return u, exe
}

// installs fails t unless Apply installs version 2.0.0, "app 2.0.0", over
// exe.
func installs(t *testing.T, ctx context.Context, u *update.Updater, exe string) {
	t.Helper()
	got, err := u.Apply(ctx)
	if err != nil || got == nil || got.Version.String() != "2.0.0" {
		t.Fatalf("apply: %+v, %v", got, err)
	}
	if b, _ := os.ReadFile(exe); string(b) != "app 2.0.0" {
		t.Fatalf("executable holds %q", b)
	}
}

// TestHTTPTransport: Config.HTTPTransport carries every HTTP request of
// an update. A program whose network reaches no DHT node gets its record
// from an HTTP relay and its release from a web seed whose names exist
// only through a forward proxy (a real one, on 127.0.0.1): the update
// installs, and the proxy saw the relay's request for the key and the
// web seed's for the bundle. Without the transport the names do not
// resolve and nothing is installed.
func TestHTTPTransport(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 2*time.Minute)
	key := newKey(t)
	pubDir, _ := closedPublisher(t, key, []byte("app 2.0.0"), "http://seed.relay.test/")
	seed := httptest.NewServer(relaytest.WebSeedHandler(pubDir))
	t.Cleanup(seed.Close)
	relayURL, _ := url.Parse(relaytest.Relay(t, network(t).Nodes[0]))
	proxy, seen := forwardProxy(t, map[string]string{
		"relay.relay.test": relayURL.Host,
		"seed.relay.test":  strings.TrimPrefix(seed.URL, "http://"),
	})

	offline := func(c *update.Config) {
		c.Bootstrap = []string{relaytest.SilentNode(t)}
		c.Relays = []string{"http://relay.relay.test"}
		c.StallTimeout = 10 * time.Second
	}
	u, _ := updater(t, key.PublicKey(), offline)
	if got, err := u.Check(ctx); err == nil {
		t.Fatalf("without the proxy, check found %+v", got)
	}
	u, exe := updater(t, key.PublicKey(), func(c *update.Config) {
		offline(c)
		c.HTTPTransport = &http.Transport{Proxy: http.ProxyURL(proxy)}
	})
	installs(t, ctx, u, exe)
	if n := seen.count("relay.relay.test", "/"+key.PublicKey().String()); n == 0 {
		t.Errorf("the proxy saw no request for the key at the relay")
	}
	if n := seen.count("seed.relay.test", ""); n == 0 {
		t.Errorf("the proxy saw no request to the web seed")
	}
}

// TestRunResolvesOnce: Run(Install) looks the record up once for the
// release it installs, serving or not (NoServe): the record its check
// verified is the one installed. Counted at a real HTTP relay of the
// local DHT (every lookup asks it, beside the DHT), it was asked for the
// key once; before, twice (Check, then Apply).
func TestRunResolvesOnce(t *testing.T) {
	t.Parallel()
	for _, noServe := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoServe=%v", noServe), func(t *testing.T) {
			t.Parallel()
			ctx := ctxFor(t, 2*time.Minute)
			key := newKey(t)
			publish(t, publisher(t), key, "2.0.0", writeFile(t, t.TempDir(), platformName, "app 2.0.0", 0o755))
			srv, err := httprelay.NewServer(httprelay.ServerConfig{DHT: network(t).Nodes[0]})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Close() })
			seen := &requests{}
			hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodGet {
					seen.add("relay", r.URL.Path)
				}
				srv.ServeHTTP(w, r)
			}))
			t.Cleanup(hs.Close)

			u, exe := updater(t, key.PublicKey(), func(c *update.Config) {
				c.Relays = []string{hs.URL}
				c.Interval = time.Hour // no second check, nor a recheck while it downloads
				c.NoServe = noServe
			})
			got, err := u.Run(ctx, update.Install)
			if err != nil || got.Version.String() != "2.0.0" {
				t.Fatalf("run: %+v, %v", got, err)
			}
			if b, _ := os.ReadFile(exe); string(b) != "app 2.0.0" {
				t.Fatalf("executable holds %q", b)
			}
			if n := seen.count("relay", "/"+key.PublicKey().String()); n != 1 {
				t.Fatalf("the relay was asked for the key %d times during a Run that installed one release, want 1", n)
			}
		})
	}
}

// closedPublisher publishes version 2.0.0 of key, one file for this
// platform holding content, with webSeeds, and closes the publisher: the
// record is in the local DHT, but no peer the DHT names serves the
// bundle. It returns the publisher's data folder, which holds the bundle,
// and the release.
func closedPublisher(t *testing.T, key *signer.PrivateKey, content []byte, webSeeds ...string) (string, record.Release) {
	t.Helper()
	ctx := ctxFor(t, time.Minute)
	pubDir := t.TempDir()
	pub, err := relay.Open(ctx, relay.Config{DataDir: pubDir, Bootstrap: []string{bootstrap(t)}, Listen: "127.0.0.1:0", ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	p, err := pub.Publish(ctx, relay.PublishOptions{
		Key: key, Version: record.MustParseVersion("2.0.0"), WebSeeds: webSeeds,
		Sources: []transfer.Source{{Path: writeFile(t, t.TempDir(), platformName, string(content), 0o755)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return pubDir, p.Release
}

// utpSeeder seeds bundle ih of the data folder dataDir with the torrent
// library alone, over uTP only (no TCP listener), on 127.0.0.1, until t
// ends, and returns its address.
func utpSeeder(t *testing.T, dataDir string, ih record.Infohash) netip.AddrPort {
	t.Helper()
	dir := filepath.Join(transfer.BundlesDir(dataDir), ih.String())
	mis, _ := filepath.Glob(filepath.Join(dir, "*.torrent"))
	if len(mis) != 1 {
		t.Fatalf("bundle %s has metainfo files %q", ih, mis)
	}
	mi, err := metainfo.LoadFromFile(mis[0])
	if err != nil {
		t.Fatal(err)
	}
	cfg := torrent.NewDefaultClientConfig()
	cfg.DataDir = t.TempDir()
	cfg.DefaultStorage = storage.NewFileOpts(storage.NewFileClientOpts{ClientBaseDir: dir, PieceCompletion: storage.NewMapPieceCompletion()})
	cfg.DisableTCP = true
	cfg.NoDHT = true
	cfg.DisableTrackers = true
	cfg.NoDefaultPortForwarding = true
	cfg.DisableIPv6 = true
	cfg.DisableWebtorrent = true
	cfg.DisableWebseeds = true
	cfg.Seed = true
	cfg.ListenHost = func(string) string { return "127.0.0.1" }
	cfg.ListenPort = 0
	cl, err := torrent.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	tt, err := cl.AddTorrent(mi)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t, time.Minute)
	if err := tt.VerifyDataContext(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-tt.Complete().On():
	case <-ctx.Done():
		t.Fatal("the uTP seeder did not verify the bundle")
	}
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(cl.LocalPort()))
}

// TestPeersAndUTP: Config.Peers and Config.UTP. The record is in the
// local DHT but the peer it names for the bundle has gone: the release
// comes only from a peer the program passes. A relay seeder that is in no
// DHT, passed in Peers, serves it over TCP: the update installs. A seeder
// that speaks uTP alone (the torrent library with no TCP listener),
// passed in Peers, cannot serve an updater that dials TCP only: its
// download stalls and nothing is installed; with UTP it installs.
func TestPeersAndUTP(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 3*time.Minute)
	key := newKey(t)
	pubDir, rel := closedPublisher(t, key, []byte("app 2.0.0"))

	via := func(peers []netip.AddrPort, utp bool) (*update.Updater, string) {
		return updater(t, key.PublicKey(), func(c *update.Config) {
			c.Peers, c.UTP, c.StallTimeout = peers, utp, 5*time.Second
		})
	}

	tcp, err := transfer.NewClient(transfer.Config{DataDir: pubDir, Listen: "127.0.0.1:0", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tcp.Seed(ctx, rel.Infohash); err != nil {
		t.Fatal(err)
	}
	u, exe := via([]netip.AddrPort{tcp.Addr()}, false)
	installs(t, ctx, u, exe)
	tcp.Close()

	peer := utpSeeder(t, pubDir, rel.Infohash)
	u, exe = via([]netip.AddrPort{peer}, false)
	if got, err := u.Apply(ctx); !errors.Is(err, relay.ErrStalled) {
		t.Fatalf("apply over TCP from a uTP-only peer: %+v, %v; want %v", got, err, relay.ErrStalled)
	}
	if b, _ := os.ReadFile(exe); string(b) != "app 1.0.0" {
		t.Fatalf("a stalled update left the executable holding %q", b)
	}
	u, exe = via([]netip.AddrPort{peer}, true)
	installs(t, ctx, u, exe)
}

// TestDownloadRate: Config.DownloadRate caps the download. A 2 MiB
// release fetched at 128 KiB/s, after the torrent library's first burst
// (1 MiB), takes 8 s or more: the test checks the least it may take,
// which a loaded machine only lengthens. Without the cap the same fetch
// on loopback takes well under a second.
func TestDownloadRate(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t, 3*time.Minute)
	key := newKey(t)
	content := make([]byte, 2<<20)
	rand.Read(content)
	pub := publisher(t)
	rel := t.TempDir()
	publish(t, pub, key, "2.0.0", writeFile(t, rel, platformName, string(content), 0o755))

	const rate = 128 << 10
	u, exe := updater(t, key.PublicKey(), func(c *update.Config) { c.DownloadRate = rate })
	start := time.Now()
	got, err := u.Apply(ctx)
	took := time.Since(start)
	if err != nil || got == nil {
		t.Fatalf("apply: %+v, %v", got, err)
	}
	if b, _ := os.ReadFile(exe); !bytes.Equal(b, content) {
		t.Fatalf("executable holds %d bytes, not the release's", len(b))
	}
	// Half the arithmetic's 8 s, for the burst's slack.
	if least := time.Duration(len(content)-1<<20) * time.Second / rate / 2; took < least {
		t.Fatalf("2 MiB at %d B/s took %s, less than %s", rate, took.Round(time.Millisecond), least)
	}
	t.Logf("2 MiB at %d B/s took %s", rate, took.Round(time.Millisecond))
}
