package transfer

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relay-sh/relay/record"
)

func TestRecognisePlatform(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		path, os, arch string
		ok             bool
	}{
		{"app_linux_amd64", "linux", "amd64", true},
		{"app-darwin-arm64.tar.gz", "darwin", "arm64", true},
		{"app_Linux_x86_64.tar.gz", "linux", "amd64", true},
		{"app_Darwin_all.tar.gz", "darwin", "", true},
		{"app-macos-universal.zip", "darwin", "", true},
		{"linux-arm64/app", "linux", "arm64", true},
		{"app_linux_arm64_v8.0/app", "linux", "arm64", true},
		{"app_windows_amd64.exe", "windows", "amd64", true},
		{"app-x64.exe", "windows", "amd64", true},
		{"app.exe", "windows", "", true},
		{"app_freebsd_386", "freebsd", "386", true},
		{"app-linux-aarch64.tar.xz", "linux", "arm64", true},
		{"README.md", "", "", false},
		{"docs/js/app.js", "", "", false},
		{"app-linux.tar.gz", "", "", false},
		{"checksums.txt", "", "", false},
	} {
		goos, goarch, ok := RecognisePlatform(tc.path)
		if goos != tc.os || goarch != tc.arch || ok != tc.ok {
			t.Errorf("RecognisePlatform(%q) = %q, %q, %v; want %q, %q, %v", tc.path, goos, goarch, ok, tc.os, tc.arch, tc.ok)
		}
	}
}

func TestChoosePieceLength(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ size, want int64 }{
		{1, 64 << 10}, {16 << 20, 64 << 10}, {64 << 20, 64 << 10}, {64<<20 + 1, 256 << 10},
		{200 << 20, 256 << 10}, {512<<20 + 1, 1 << 20}, {1 << 30, 1 << 20}, {4 << 30, 2 << 20}, {1 << 40, 16 << 20},
	} {
		if got := ChoosePieceLength(tc.size); got != tc.want {
			t.Errorf("ChoosePieceLength(%d) = %d, want %d", tc.size, got, tc.want)
		}
	}
}

// TestMakeDeterministic: the same files, listed in another order, with
// other times and other permission bits, in another folder, give the same
// bundle and infohash; another publication time gives another.
func TestMakeDeterministic(t *testing.T) {
	t.Parallel()
	files := map[string]int64{"app_linux_amd64": 300 << 10, "app_darwin_arm64": 200 << 10, "README.md": 1234, "empty": 0}
	mk := func(order []string, mtime time.Time, perm os.FileMode, published time.Time) *Bundle {
		src := t.TempDir()
		var sources []Source
		for _, name := range order {
			p := filepath.Join(src, name)
			writeRandom(t, p, files[name], uint64(len(name))+uint64(files[name]), perm)
			if err := os.Chtimes(p, mtime, mtime); err != nil {
				t.Fatal(err)
			}
			sources = append(sources, Source{Path: p})
		}
		b, err := Make(context.Background(), MakeOptions{
			Dir: t.TempDir(), Sources: sources, Key: testKey(t),
			Version: record.MustParseVersion("2.0.0-rc.1"), Published: published, Notes: "notes",
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a := mk([]string{"app_linux_amd64", "app_darwin_arm64", "README.md", "empty"}, time.Unix(1e9, 0), 0o755, testTime)
	b := mk([]string{"empty", "README.md", "app_darwin_arm64", "app_linux_amd64"}, time.Unix(2e9, 5), 0o700, testTime.Add(300*time.Millisecond))
	if a.Infohash != b.Infohash || string(a.ManifestBytes) != string(b.ManifestBytes) {
		t.Fatalf("same files gave %s and %s", a.Infohash, b.Infohash)
	}
	ma, _ := os.ReadFile(filepath.Join(filepath.Dir(a.Dir), a.Name+".torrent"))
	mb, _ := os.ReadFile(filepath.Join(filepath.Dir(b.Dir), b.Name+".torrent"))
	if len(ma) == 0 || string(ma) != string(mb) {
		t.Fatal("metainfo files differ")
	}
	c := mk([]string{"app_linux_amd64", "app_darwin_arm64", "README.md", "empty"}, time.Unix(1e9, 0), 0o755, testTime.Add(time.Second))
	if c.Infohash == a.Infohash {
		t.Fatal("another publication time gave the same infohash")
	}
}

func TestMakeBundle(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	writeRandom(t, filepath.Join(src, "dist", "app_linux_amd64"), 100<<10, 1, 0o755)
	writeRandom(t, filepath.Join(src, "dist", "sub", "notes.txt"), 10, 2, 0o600)
	writeRandom(t, filepath.Join(src, "LICENSE"), 50, 3, 0o644)
	writeRandom(t, filepath.Join(src, "tool"), 70, 4, 0o755)
	root := t.TempDir()
	b, err := Make(context.Background(), MakeOptions{
		Dir: root, Key: testKey(t), Version: record.MustParseVersion("1.0.0"), Published: testTime,
		Sources: []Source{
			{Path: filepath.Join(src, "dist")},
			{Path: filepath.Join(src, "LICENSE")},
			{Path: filepath.Join(src, "tool"), OS: "plan9", Arch: "arm"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]record.File{
		"app_linux_amd64": {Path: "app_linux_amd64", Size: 100 << 10, Mode: 0o755, OS: "linux", Arch: "amd64"},
		"sub/notes.txt":   {Path: "sub/notes.txt", Size: 10, Mode: 0o644},
		"LICENSE":         {Path: "LICENSE", Size: 50, Mode: 0o644},
		"tool":            {Path: "tool", Size: 70, Mode: 0o755, OS: "plan9", Arch: "arm"},
	}
	if len(b.Manifest.Files) != len(want) {
		t.Fatalf("manifest lists %d files, want %d", len(b.Manifest.Files), len(want))
	}
	for _, f := range b.Manifest.Files {
		w := want[f.Path]
		w.SHA256 = f.SHA256
		if f != w {
			t.Errorf("manifest lists %+v, want %+v", f, w)
		}
		sameContent(t, filepath.Join(b.Dir, f.Path), filepath.Join(src, map[string]string{
			"app_linux_amd64": "dist/app_linux_amd64", "sub/notes.txt": "dist/sub/notes.txt", "LICENSE": "LICENSE", "tool": "tool",
		}[f.Path]))
	}
	if b.Name != "stable-1.0.0" || b.Dir != filepath.Join(root, b.Infohash.String(), "stable-1.0.0") {
		t.Errorf("bundle %q in %s", b.Name, b.Dir)
	}
	if m := b.Magnet(); m != "magnet:?xt=urn:btih:"+b.Infohash.String()+"&dn=stable-1.0.0" {
		t.Errorf("magnet %s", m)
	}
	if b.Size != b.Manifest.BundleSize(len(b.ManifestBytes)) || b.ManifestDigest != record.SHA256(b.ManifestBytes) {
		t.Error("size or manifest digest wrong")
	}
	o, err := OpenBundle(root, b.Infohash)
	if err != nil {
		t.Fatal(err)
	}
	if o.Infohash != b.Infohash || o.Size != b.Size || o.Dir != b.Dir || string(o.ManifestBytes) != string(b.ManifestBytes) {
		t.Errorf("OpenBundle gave %+v, want %+v", o, b)
	}
	ihs, err := ListBundles(root)
	if err != nil || len(ihs) != 1 || ihs[0] != b.Infohash {
		t.Errorf("ListBundles = %v, %v", ihs, err)
	}
	// Making it again finds it.
	again, err := Make(context.Background(), MakeOptions{
		Dir: root, Key: testKey(t), Version: record.MustParseVersion("1.0.0"), Published: testTime,
		Sources: []Source{{Path: filepath.Join(src, "tool"), OS: "plan9", Arch: "arm"}, {Path: filepath.Join(src, "LICENSE")}, {Path: filepath.Join(src, "dist")}},
	})
	if err != nil || again.Infohash != b.Infohash {
		t.Fatalf("second make: %v, %v", again, err)
	}
	r := b.Release(testTime.Add(time.Hour), "https://example.com/b/")
	if r.Infohash != b.Infohash || r.Size != b.Size || r.Manifest != b.ManifestDigest || r.Channel != "stable" || len(r.WebSeeds) != 1 {
		t.Errorf("release %+v", r)
	}
}

func TestMakeRefuses(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	writeRandom(t, filepath.Join(src, "a", "x"), 1, 1, 0o644)
	writeRandom(t, filepath.Join(src, "b", "x"), 1, 2, 0o644)
	writeRandom(t, filepath.Join(src, "relay.json"), 1, 3, 0o644)
	base := MakeOptions{Dir: t.TempDir(), Key: testKey(t), Version: record.MustParseVersion("1.0.0")}
	for name, o := range map[string]func(*MakeOptions){
		"two sources for one path": func(o *MakeOptions) {
			o.Sources = []Source{{Path: filepath.Join(src, "a")}, {Path: filepath.Join(src, "b")}}
		},
		"relay.json":    func(o *MakeOptions) { o.Sources = []Source{{Path: filepath.Join(src, "relay.json")}} },
		"nothing":       func(o *MakeOptions) {},
		"missing":       func(o *MakeOptions) { o.Sources = []Source{{Path: filepath.Join(src, "nope")}} },
		"no key":        func(o *MakeOptions) { o.Sources = []Source{{Path: filepath.Join(src, "a")}}; o.Key = [32]byte{} },
		"bad channel":   func(o *MakeOptions) { o.Sources = []Source{{Path: filepath.Join(src, "a")}}; o.Channel = "Stable!" },
		"piece length":  func(o *MakeOptions) { o.Sources = []Source{{Path: filepath.Join(src, "a")}}; o.PieceLength = 3 << 14 },
		"no bundle dir": func(o *MakeOptions) { o.Sources = []Source{{Path: filepath.Join(src, "a")}}; o.Dir = "" },
	} {
		opts := base
		o(&opts)
		if _, err := Make(context.Background(), opts); err == nil {
			t.Errorf("%s: made a bundle", name)
		} else if strings.Contains(err.Error(), "panic") {
			t.Errorf("%s: %v", name, err)
		}
	}
}
