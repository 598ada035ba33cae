// Package relaytest runs what tests of relay where UDP is blocked need
// around the code under test: a web seed of a data folder's bundles, a
// pkarr HTTP relay of a DHT node, and a DHT address that never answers.
// It is for tests only.
package relaytest

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/relay-sh/relay/dht"
	"github.com/relay-sh/relay/httprelay"
	"github.com/relay-sh/relay/transfer"
)

// WebSeedHandler serves every bundle of the data folder dataDir, whichever
// its infohash, at <name>/<path> and <name>.torrent, as a web seed named
// in a record is asked.
func WebSeedHandler(dataDir string) http.Handler {
	bundles := transfer.BundlesDir(dataDir)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dirs, _ := os.ReadDir(bundles)
		for _, d := range dirs {
			p := filepath.Join(bundles, d.Name(), filepath.FromSlash(r.URL.Path))
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
				http.ServeFile(w, r, p)
				return
			}
		}
		http.NotFound(w, r)
	})
}

// WebSeed serves WebSeedHandler(dataDir) on 127.0.0.1 until tb ends and
// returns the web seed's URL, ending in a slash.
func WebSeed(tb testing.TB, dataDir string) string {
	s := httptest.NewServer(WebSeedHandler(dataDir))
	tb.Cleanup(s.Close)
	return s.URL + "/"
}

// HTTPRelay runs relay's pkarr HTTP relay server with cfg (its DHT node
// set) on 127.0.0.1 until tb ends, and returns the server and its URL.
func HTTPRelay(tb testing.TB, cfg httprelay.ServerConfig) (*httprelay.Server, string) {
	tb.Helper()
	s, err := httprelay.NewServer(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Error(err)
		}
		s.Close()
	})
	return s, "http://" + ln.Addr().String()
}

// Relay is HTTPRelay of node with the default configuration, its URL.
func Relay(tb testing.TB, node *dht.Node) string {
	_, u := HTTPRelay(tb, httprelay.ServerConfig{DHT: node})
	return u
}

// SilentNode returns the address of a UDP socket on 127.0.0.1 that never
// answers, open until tb ends: a DHT that UDP does not reach, as behind
// a firewall that drops it.
func SilentNode(tb testing.TB) string {
	tb.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c.LocalAddr().String()
}
