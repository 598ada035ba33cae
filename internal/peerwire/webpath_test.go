package peerwire

import (
	"bufio"
	"context"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
)

// trickyNames are file names a web seed path must escape: spaces, '+'
// (a space to S3), '%', '#', '?', the other reserved characters, and
// UTF-8.
var trickyNames = []string{
	"a b+c%d#e?f;g=h&i,j$k:l@m!n*o(p)q'r~s[t]u.txt",
	"日本 語.bin",
	"100%25 +.txt",
	"#top",
	"?",
	"+",
}

// TestWebPath: each file's path is escaped as aria2 escapes it (the
// vectors are the request paths aria2 1.36 sent for a torrent of these
// names), and unescapes to the file's name.
func TestWebPath(t *testing.T) {
	t.Parallel()
	cases := []struct {
		parts []string
		want  string
	}{
		{[]string{"app"}, "app"},
		{[]string{"dir +#?%é ü", "日本 語.bin"}, "dir%20%2B%23%3F%25%C3%A9%20%C3%BC/%E6%97%A5%E6%9C%AC%20%E8%AA%9E.bin"},
		{[]string{"dir +#?%é ü", trickyNames[0]}, "dir%20%2B%23%3F%25%C3%A9%20%C3%BC/a%20b%2Bc%25d%23e%3Ff%3Bg%3Dh%26i%2Cj%24k%3Al%40m%21n%2Ao%28p%29q%27r~s%5Bt%5Du.txt"},
		{[]string{"a", "b", "c.d-e_f~"}, "a/b/c.d-e_f~"},
	}
	for _, tc := range cases {
		got := webPath(tc.parts)
		if got != tc.want {
			t.Errorf("webPath(%q) = %s, want %s", tc.parts, got, tc.want)
		}
		for _, unescape := range []func(string) (string, error){url.PathUnescape, url.QueryUnescape} {
			if u, err := unescape(got); err != nil || u != strings.Join(tc.parts, "/") {
				t.Errorf("%s unescapes to %q, %v", got, u, err)
			}
		}
	}
}

// trickyBundle writes a torrent of files with trickyNames in a folder
// named name under a new root (a single file when single), with pieces
// of pieceLen, and returns it.
func trickyBundle(t *testing.T, name string, single bool, pieceLen int64) *bundle {
	t.Helper()
	root := t.TempDir()
	top := filepath.Join(root, name)
	if single {
		writeRandom(t, top, 3*pieceLen+77, 1)
	} else {
		for i, n := range trickyNames {
			writeRandom(t, filepath.Join(top, n), int64(1000*(i+1)), uint64(i))
		}
		writeRandom(t, filepath.Join(top, "sub dir+", trickyNames[0]), 5555, 99)
	}
	info := metainfo.Info{PieceLength: pieceLen}
	if err := info.BuildFromFilePath(top); err != nil {
		t.Fatal(err)
	}
	infoBytes, err := bencode.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ParseInfo(infoBytes)
	if err != nil {
		t.Fatal(err)
	}
	return &bundle{infoBytes: infoBytes, info: parsed, root: root}
}

// pythonHTTPServer serves root with Python's http.server on 127.0.0.1
// until the test ends and returns its URL, or skips t without python3.
func pythonHTTPServer(t *testing.T, root string) string {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "python3", "-u", "-m", "http.server", "--bind", "127.0.0.1", "--directory", root, "0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	m := regexp.MustCompile(`port (\d+)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("http.server said %q, %v", line, err)
	}
	go func() { bufio.NewReader(out).WriteTo(io.Discard) }()
	return "http://127.0.0.1:" + m[1]
}

// TestWebSeedPaths: torrents whose folder and file names hold spaces,
// '+', '%', '#', '?', the other reserved characters and UTF-8 download
// whole from a web seed alone, served by net/http's FileServer and by
// Python's http.server (which ignores ranges: its torrent is one piece,
// so that every file is asked for whole).
func TestWebSeedPaths(t *testing.T) {
	t.Parallel()
	net := func(t *testing.T, root string) string {
		var n atomic.Int64
		return webServer(t, http.FileServer(http.Dir(root)), &n)
	}
	cases := []struct {
		name     string
		single   bool
		pieceLen int64
		serve    func(t *testing.T, root string) string
	}{
		{"net/http/files", false, 16 << 10, net},
		{"net/http/single", true, 16 << 10, net},
		{"python/files", false, 1 << 20, pythonHTTPServer},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := trickyBundle(t, "dir +#?%é ü "+trickyNames[0], tc.single, tc.pieceLen)
			u := tc.serve(t, b.root)
			tor, dir := addTorrent(t, New(Config{}), b, b.infoBytes)
			err := tor.Download(ctxFor(t, 2*time.Minute), DownloadOptions{
				WebSeeds:       []string{u},
				WebSeedDropped: func(u string, err error) { t.Errorf("web seed %s dropped: %v", u, err) },
			})
			if err != nil {
				t.Fatal(err)
			}
			sameFiles(t, b, dir)
		})
	}
}

// TestWebSeedPathsAsAria2: aria2 and a download of this package, fetching
// a torrent of trickyNames from one web seed, ask it for the same URLs,
// byte for byte.
func TestWebSeedPathsAsAria2(t *testing.T) {
	t.Parallel()
	aria2, err := exec.LookPath("aria2c")
	if err != nil {
		t.Skip("aria2c is not installed")
	}
	b := trickyBundle(t, "dir +#?%é ü "+trickyNames[0], false, 16<<10)
	var mu sync.Mutex
	asked := map[string]map[string]bool{"aria2": {}, "peerwire": {}}
	fs := http.FileServer(http.Dir(b.root))
	var n atomic.Int64
	u := webServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who := "peerwire"
		if strings.Contains(r.UserAgent(), "aria2") {
			who = "aria2"
		}
		mu.Lock()
		asked[who][r.RequestURI] = true
		mu.Unlock()
		fs.ServeHTTP(w, r)
	}), &n)

	tor, dir := addTorrent(t, New(Config{}), b, b.infoBytes)
	if err := tor.Download(ctxFor(t, 2*time.Minute), DownloadOptions{WebSeeds: []string{u}}); err != nil {
		t.Fatal(err)
	}
	sameFiles(t, b, dir)

	tf := filepath.Join(t.TempDir(), "t.torrent")
	f, err := os.Create(tf)
	if err != nil {
		t.Fatal(err)
	}
	if err := (&metainfo.MetaInfo{InfoBytes: b.infoBytes, UrlList: []string{u + "/"}}).Write(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out := t.TempDir()
	cmd := exec.CommandContext(ctxFor(t, 2*time.Minute), aria2, "--dir="+out, "--interface=127.0.0.1",
		"--disable-ipv6=true", "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
		"--enable-peer-exchange=false", "--seed-time=0", "--bt-save-metadata=false", "--file-allocation=none",
		"--summary-interval=0", "--console-log-level=warn", "--no-conf=true", "--auto-save-interval=0",
		"--allow-overwrite=true", tf)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("aria2c: %v\n%s", err, b)
	}
	sameFiles(t, b, out)
	mu.Lock()
	defer mu.Unlock()
	if !maps.Equal(asked["aria2"], asked["peerwire"]) {
		t.Errorf("aria2 asked for %v\npeerwire asked for %v", slices.Sorted(maps.Keys(asked["aria2"])), slices.Sorted(maps.Keys(asked["peerwire"])))
	}
	if len(asked["aria2"]) != len(b.info.Files) {
		t.Errorf("aria2 asked for %d files, want %d", len(asked["aria2"]), len(b.info.Files))
	}
}
