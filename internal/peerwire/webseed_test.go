package peerwire

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// webServer serves h on 127.0.0.1 until the test ends, counting its
// requests, and returns its URL.
func webServer(t testing.TB, h http.Handler, requests *atomic.Int64) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestDownloadFromWebSeed: a bundle of several files, with pieces that
// span files, comes whole from a web seed alone (an HTTP file server on
// the bundle's folder, its URL without the final '/'), in index order.
func TestDownloadFromWebSeed(t *testing.T) {
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 1<<20 + 12345, "lib/x y.so": 100<<10 + 7, "README.md": 999, "a/b/c": 64 << 10}, 64<<10)
	var n atomic.Int64
	u := webServer(t, http.FileServer(http.Dir(b.root)), &n)
	tor, dir := addTorrent(t, New(Config{}), b, b.infoBytes)
	var seen []int
	err := tor.Download(ctxFor(t, 2*time.Minute), DownloadOptions{
		WebSeeds: []string{u},
		InOrder:  true,
		OnPiece:  func(i int, _ []byte) error { seen = append(seen, i); return nil },
		WebSeedDropped: func(u string, err error) {
			t.Errorf("web seed %s dropped: %v", u, err)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	sameFiles(t, b, dir)
	if len(seen) != tor.npieces || !slices.IsSorted(seen) {
		t.Errorf("OnPiece saw pieces %v, want 0 to %d in order", seen, tor.npieces-1)
	}
}

// hostileWebSeed answers a range request for the file at path under root
// (its size) as a hostile web seed would.
type hostileWebSeed func(w http.ResponseWriter, r *http.Request, size int64)

// rangeOf parses r's single byte range.
func rangeOf(r *http.Request) (a, b int64) {
	fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &a, &b)
	return a, b
}

// partial writes the headers of a 206 answer for r's range, with a
// Content-Length when withLength.
func partial(w http.ResponseWriter, r *http.Request, size int64, withLength bool) (a, b int64) {
	a, b = rangeOf(r)
	w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", a, b, size))
	if withLength {
		w.Header().Set("Content-Length", fmt.Sprint(b-a+1))
	}
	w.WriteHeader(http.StatusPartialContent)
	return a, b
}

// TestWebSeedHostile: a download whose only source at first is a hostile
// web seed drops it (it is asked a bounded number of times) and then gets
// every piece from a peer; a web seed that drips bytes is not waited for:
// peers take its pieces over.
func TestWebSeedHostile(t *testing.T) {
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 512<<10 + 333, "lib/x.so": 100 << 10}, 64<<10)
	_, _, peer := seeded(t, b, Config{})
	cases := []struct {
		name string
		h    hostileWebSeed
		drop bool // else the peer is there from the start
	}{
		{"wrong bytes", func(w http.ResponseWriter, r *http.Request, size int64) {
			a, b := partial(w, r, size, true)
			w.Write(make([]byte, b-a+1))
		}, true},
		{"short body", func(w http.ResponseWriter, r *http.Request, size int64) {
			a, b := partial(w, r, size, true)
			w.Write(make([]byte, (b-a+1)/2))
		}, true},
		{"wrong range", func(w http.ResponseWriter, r *http.Request, size int64) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-0/%d", size))
			w.WriteHeader(http.StatusPartialContent)
			w.Write([]byte{0})
		}, true},
		{"whole file", func(w http.ResponseWriter, r *http.Request, size int64) {
			w.Write(make([]byte, size))
		}, true},
		{"endless body", func(w http.ResponseWriter, r *http.Request, size int64) {
			partial(w, r, size, false)
			buf := make([]byte, 32<<10)
			for r.Context().Err() == nil {
				if _, err := w.Write(buf); err != nil {
					return
				}
			}
		}, true},
		{"500s", func(w http.ResponseWriter, r *http.Request, size int64) {
			http.Error(w, "overloaded", http.StatusInternalServerError)
		}, true},
		{"redirect loop", func(w http.ResponseWriter, r *http.Request, size int64) {
			http.Redirect(w, r, r.URL.Path, http.StatusFound)
		}, true},
		{"slow drip", func(w http.ResponseWriter, r *http.Request, size int64) {
			partial(w, r, size, true)
			for r.Context().Err() == nil {
				if _, err := w.Write([]byte{0}); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
				case <-time.After(100 * time.Millisecond):
				}
			}
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var requests atomic.Int64
			u := webServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fi, err := os.Stat(filepath.Join(b.root, filepath.FromSlash(strings.TrimPrefix(r.URL.Path, "/"))))
				if err != nil {
					http.NotFound(w, r)
					return
				}
				tc.h(w, r, fi.Size())
			}), &requests)
			tor, dir := addTorrent(t, New(Config{}), b, b.infoBytes)
			more := make(chan string, 1)
			o := DownloadOptions{WebSeeds: []string{u}, MorePeers: more}
			var mu sync.Mutex
			var dropped []string
			o.WebSeedDropped = func(u string, err error) {
				mu.Lock()
				defer mu.Unlock()
				t.Logf("dropped %s: %v", u, err)
				dropped = append(dropped, u)
				more <- peer
			}
			if !tc.drop {
				o.Peers = []string{peer}
			}
			if err := tor.Download(ctxFor(t, 2*time.Minute), o); err != nil {
				t.Fatal(err)
			}
			sameFiles(t, b, dir)
			mu.Lock()
			defer mu.Unlock()
			if tc.drop && !slices.Equal(dropped, []string{u + "/"}) {
				t.Errorf("web seeds dropped: %v, want %s/", dropped, u)
			}
			if !tc.drop && len(dropped) > 0 {
				t.Errorf("web seeds dropped: %v, want none", dropped)
			}
			if n := requests.Load(); tc.drop && n > 3*maxRedirects+2*maxWebFailures {
				t.Errorf("the web seed was asked %d times", n)
			}
		})
	}
}

// TestDownloadWebSeedAndPeer: a download from a web seed and a peer that
// uploads at 1 MiB/s gets the files whole, part of them from the web
// seed.
func TestDownloadWebSeedAndPeer(t *testing.T) {
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 3<<20 + 1, "etc/conf": 5000}, 64<<10)
	_, _, peer := seeded(t, b, Config{UploadRate: 1 << 20})
	var requests atomic.Int64
	u := webServer(t, http.FileServer(http.Dir(b.root)), &requests)
	tor, dir := addTorrent(t, New(Config{}), b, b.infoBytes)
	err := tor.Download(ctxFor(t, 2*time.Minute), DownloadOptions{
		Peers: []string{peer}, WebSeeds: []string{u + "/"},
		WebSeedDropped: func(u string, err error) { t.Errorf("web seed %s dropped: %v", u, err) },
	})
	if err != nil {
		t.Fatal(err)
	}
	sameFiles(t, b, dir)
	if requests.Load() == 0 {
		t.Error("the web seed was never asked")
	}
}

// TestWebSeedsBounded: of 7 web seeds a download uses the first 4.
func TestWebSeedsBounded(t *testing.T) {
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 1 << 20}, 64<<10)
	var mu sync.Mutex
	asked := map[string]bool{}
	var requests atomic.Int64
	fs := http.FileServer(http.Dir(b.root))
	u := webServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seed, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		mu.Lock()
		asked[seed] = true
		mu.Unlock()
		r.URL.Path = "/" + rest
		fs.ServeHTTP(w, r)
	}), &requests)
	var seeds []string
	for i := range 7 {
		seeds = append(seeds, fmt.Sprintf("%s/s%d/", u, i))
	}
	tor, dir := addTorrent(t, New(Config{}), b, b.infoBytes)
	if err := tor.Download(ctxFor(t, 2*time.Minute), DownloadOptions{WebSeeds: seeds}); err != nil {
		t.Fatal(err)
	}
	sameFiles(t, b, dir)
	mu.Lock()
	defer mu.Unlock()
	for s := range asked {
		if s > "s3" {
			t.Errorf("web seed %s was asked, beyond the first 4", s)
		}
	}
}
