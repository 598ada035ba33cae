package record

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func testManifest(t testing.TB) *Manifest {
	return &Manifest{
		Format:    ManifestFormat,
		Key:       fixedKey(t, 1).PublicKey(),
		Channel:   "stable",
		Version:   MustParseVersion("1.2.3"),
		Published: fixedNow.Add(1500 * time.Millisecond),
		Notes:     "fixes <everything> & more",
		Files: []File{
			{Path: "tool_linux_amd64", Size: 10, SHA256: SHA256([]byte("a")), Mode: 0o755, OS: "linux", Arch: "amd64"},
			{Path: "README.md", Size: 3, SHA256: SHA256([]byte("b")), Mode: 0o644},
			{Path: "tool_windows_amd64.exe", Size: 12, SHA256: SHA256([]byte("c")), Mode: 0o755, OS: "windows", Arch: "amd64"},
			{Path: "docs/guide.txt", Size: 0, SHA256: SHA256(nil), Mode: 0o644},
		},
	}
}

func TestManifestCanonical(t *testing.T) {
	m := testManifest(t)
	a, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	// Another order of files and another time zone give the same bytes.
	m2 := testManifest(t)
	m2.Files[0], m2.Files[3] = m2.Files[3], m2.Files[0]
	m2.Published = m2.Published.In(time.FixedZone("x", 3600))
	b, _ := m2.Encode()
	if !bytes.Equal(a, b) {
		t.Fatalf("encodings differ:\n%s\n%s", a, b)
	}
	d, err := DecodeManifest(a)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := d.Encode()
	if !bytes.Equal(a, c) {
		t.Fatalf("decode then encode changed the bytes:\n%s\n%s", a, c)
	}
	for _, want := range []string{`"mode": "0755"`, `"published": "2026-11-01T00:00:01Z"`, `"path": "README.md"`, `"key": "` + m.Key.String()} {
		if !strings.Contains(string(a), want) {
			t.Errorf("encoding lacks %s:\n%s", want, a)
		}
	}
	if m.Files[0].Path != "tool_linux_amd64" {
		t.Fatal("Encode reordered the caller's files")
	}
}

func TestManifestRefusals(t *testing.T) {
	for name, mod := range map[string]func(*Manifest){
		"format 2":       func(m *Manifest) { m.Format = 2 },
		"no key":         func(m *Manifest) { m.Key = [32]byte{} },
		"bad channel":    func(m *Manifest) { m.Channel = "a.b" },
		"no version":     func(m *Manifest) { m.Version = Version{} },
		"absolute":       func(m *Manifest) { m.Files[0].Path = "/etc/passwd" },
		"dot-dot":        func(m *Manifest) { m.Files[0].Path = "../x" },
		"inner dot-dot":  func(m *Manifest) { m.Files[0].Path = "a/../../x" },
		"unclean":        func(m *Manifest) { m.Files[0].Path = "a//b" },
		"backslash":      func(m *Manifest) { m.Files[0].Path = `a\b` },
		"manifest":       func(m *Manifest) { m.Files[0].Path = ManifestName },
		"empty path":     func(m *Manifest) { m.Files[0].Path = "" },
		"duplicate":      func(m *Manifest) { m.Files[1].Path = m.Files[0].Path },
		"file is dir":    func(m *Manifest) { m.Files[1].Path = "docs" },
		"negative size":  func(m *Manifest) { m.Files[0].Size = -1 },
		"setuid":         func(m *Manifest) { m.Files[0].Mode = 0o4755 },
		"bad os":         func(m *Manifest) { m.Files[0].OS = "Linux!" },
		"newline":        func(m *Manifest) { m.Files[0].Path = "x\n/etc/passwd" },
		"escape":         func(m *Manifest) { m.Files[0].Path = "a\x1b[2Jb" },
		"tab":            func(m *Manifest) { m.Files[0].Path = "a\tb" },
		"c1 control":     func(m *Manifest) { m.Files[0].Path = "a\u009bb" },
		"del":            func(m *Manifest) { m.Files[0].Path = "a\x7f" },
		"not utf-8":      func(m *Manifest) { m.Files[0].Path = "a\xffb" },
		"bidi override":  func(m *Manifest) { m.Files[0].Path = "app\u202egpj.exe" },
		"line separator": func(m *Manifest) { m.Files[0].Path = "a\u2028b" },
	} {
		m := testManifest(t)
		mod(m)
		if _, err := m.Encode(); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	good, _ := testManifest(t).Encode()
	for name, b := range map[string][]byte{
		"not json":      []byte("{"),
		"trailing data": append(bytes.Clone(good), []byte("{}")...),
		"bad mode":      bytes.Replace(good, []byte(`"0755"`), []byte(`"rwx"`), 1),
		"bad sha":       bytes.Replace(good, []byte(`"sha256": "`), []byte(`"sha256": "zz`), 1),
		"huge":          make([]byte, MaxManifestSize+1),
	} {
		if _, err := DecodeManifest(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	// Unknown fields are ignored.
	extra := bytes.Replace(good, []byte(`"format": 1,`), []byte(`"format": 1, "signed_by_ci": true,`), 1)
	if _, err := DecodeManifest(extra); err != nil {
		t.Fatalf("unknown field: %v", err)
	}
}

func TestManifestSelect(t *testing.T) {
	m := testManifest(t)
	paths := func(fs []File) (out []string) {
		for _, f := range fs {
			out = append(out, f.Path)
		}
		return out
	}
	if got := paths(m.Select("linux", "amd64")); strings.Join(got, ",") != "tool_linux_amd64,README.md,docs/guide.txt" {
		t.Fatalf("linux/amd64: %v", got)
	}
	if got := paths(m.Select("darwin", "arm64")); strings.Join(got, ",") != "README.md,docs/guide.txt" {
		t.Fatalf("darwin/arm64: %v", got)
	}
	if got := m.Select("", ""); len(got) != 4 {
		t.Fatalf("all: %v", paths(got))
	}
}

func TestManifestMatch(t *testing.T) {
	m := testManifest(t)
	enc, _ := m.Encode()
	r := Release{Channel: "stable", Version: m.Version, Manifest: SHA256(enc), Size: m.BundleSize(len(enc))}
	if err := m.Match(m.Key, r, enc); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Release, *[]byte){
		"hash":    func(r *Release, _ *[]byte) { r.Manifest[0] ^= 1 },
		"bytes":   func(_ *Release, b *[]byte) { *b = append(bytes.Clone(*b), ' ') },
		"channel": func(r *Release, _ *[]byte) { r.Channel = "beta" },
		"version": func(r *Release, _ *[]byte) { r.Version = MustParseVersion("1.2.4") },
		"size":    func(r *Release, _ *[]byte) { r.Size++ },
	} {
		r2, enc2 := r, enc
		mod(&r2, &enc2)
		if err := m.Match(m.Key, r2, enc2); !errors.Is(err, ErrManifestMismatch) {
			t.Errorf("%s: %v, want ErrManifestMismatch", name, err)
		}
	}
	if err := m.Match(fixedKey(t, 9).PublicKey(), r, enc); !errors.Is(err, ErrManifestMismatch) {
		t.Errorf("other key: %v", err)
	}
}
