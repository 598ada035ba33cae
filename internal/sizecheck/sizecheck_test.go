package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// heavy lists what the torrent library's client brings that relay never
// uses: its WebRTC transport, OpenTelemetry, its storage package (bbolt,
// and SQLite with cgo) and its cgo uTP.
var heavy = []string{
	"github.com/anacrolix/torrent",
	"github.com/anacrolix/torrent/storage",
	"github.com/anacrolix/torrent/webtorrent",
	"github.com/anacrolix/go-libutp",
	"github.com/pion/",
	"go.opentelemetry.io/",
	"go.etcd.io/bbolt",
	"github.com/go-llsqlite/",
}

func isHeavy(pkg string) bool {
	for _, h := range heavy {
		if pkg == h || strings.HasSuffix(h, "/") && strings.HasPrefix(pkg, h) {
			return true
		}
	}
	return false
}

// TestLeanPackages: the packages a fetch path without the torrent
// library's client would stand on (the record and key formats, the DHT
// node, the HTTP relay client: internal/sizecheck/floor) link none of that
// client's weight, with cgo or without. An import that changed it would
// put the floor of a lean update out of reach.
func TestLeanPackages(t *testing.T) {
	pkgs := []string{"./record", "./signer", "./dht", "./httprelay", "./internal/peerwire"}
	for _, cgo := range []string{"0", "1"} {
		var out bytes.Buffer
		env := []string{"CGO_ENABLED=" + cgo}
		if err := goEnv(t.Context(), env, &out, append([]string{"list", "-deps"}, pkgs...)...); err != nil {
			t.Fatal(err)
		}
		for pkg := range strings.Lines(out.String()) {
			if pkg = strings.TrimSpace(pkg); isHeavy(pkg) {
				t.Errorf("CGO_ENABLED=%s: %v link %s", cgo, pkgs, pkg)
			}
		}
	}
}

// TestUpdateGrowth builds hello-world with and without update, stripped
// (with their paths: a few kB more than task size's), and fails when
// update adds more than budgetMB.
func TestUpdateGrowth(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two programs")
	}
	root, err := moduleRoot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var size [2]int64
	for i, pkg := range []string{"./internal/sizecheck/hello", "./internal/sizecheck/embed"} {
		if size[i], err = builtSize(t.Context(), root, target{pkg: pkg, keepPaths: true}, filepath.Join(t.TempDir(), "bin")); err != nil {
			t.Fatal(err)
		}
	}
	growth := size[1] - size[0]
	t.Logf("hello-world %s, with update %s (+%s)", mb(size[0]), mb(size[1]), mb(growth))
	if float64(growth) > budgetMB*1e6 {
		t.Errorf("update grows hello-world by %s, over the budget of %.1f MB", mb(growth), budgetMB)
	}
}

func TestSymbolPackage(t *testing.T) {
	for sym, want := range map[string]string{
		"fmt.Println": "fmt",
		"github.com/pion/webrtc/v4.(*PeerConnection).Close":                                   "github.com/pion/webrtc/v4",
		"github.com/anacrolix/generics.Option[github.com/anacrolix/torrent/metainfo.Hash].Ok": "github.com/anacrolix/generics",
		"crypto/internal/fips140/sha256.block":                                                "crypto/internal/fips140/sha256",
		"go:func.*":                                                                           "go:func",
		"runtime.main":                                                                        "runtime",
	} {
		if got := symbolPackage(sym); got != want {
			t.Errorf("symbolPackage(%q) = %q, want %q", sym, got, want)
		}
	}
}

func goEnv(ctx context.Context, env []string, stdout *bytes.Buffer, args ...string) error {
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	return gocmd(ctx, root, env, stdout, args...)
}
