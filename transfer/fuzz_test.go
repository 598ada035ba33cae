package transfer

import (
	"crypto/sha1"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/relay-sh/relay/record"
)

// FuzzParseInfo: info dictionaries come from peers; whatever their bytes,
// parsing does not panic, and what it accepts is a bundle relay can store.
func FuzzParseInfo(f *testing.F) {
	dataDir := f.TempDir()
	b := testBundle(f, dataDir, map[string]int64{"a": 1000, "dir/b": 70000})
	_, infoBytes, err := loadMetainfo(filepath.Dir(b.Dir), b.Infohash)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(infoBytes)
	f.Add([]byte("d4:name1:x12:piece lengthi16384e6:pieces0:e"))
	f.Add([]byte("d5:filesld6:lengthi0e4:pathl1:xeee4:name1:x12:piece lengthi16384e6:pieces0:e"))
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := parseInfo(data, record.Infohash(sha1.Sum(data)))
		if err != nil {
			return
		}
		if err := checkInfo(info); err != nil {
			t.Fatalf("parseInfo accepted what checkInfo refuses: %v", err)
		}
		for _, fi := range info.Files {
			if !cleanPath(fi.Path) || fi.Length <= 0 {
				t.Fatalf("accepted file %q of %d bytes", fi.Path, fi.Length)
			}
		}
	})
}

// FuzzRecognisePlatform: whatever the name, a recognised platform is one
// a manifest accepts.
func FuzzRecognisePlatform(f *testing.F) {
	for _, s := range []string{"app_linux_amd64", "a-darwin-all.tgz", "x.exe", "win-x86_64.zip"} {
		f.Add(s)
	}
	valid := regexp.MustCompile(`^[a-z0-9]{1,32}$`)
	f.Fuzz(func(t *testing.T, name string) {
		goos, goarch, ok := RecognisePlatform(name)
		if !ok {
			if goos != "" || goarch != "" {
				t.Fatal("platform without ok")
			}
			return
		}
		if !valid.MatchString(goos) || goarch != "" && !valid.MatchString(goarch) {
			t.Fatalf("RecognisePlatform(%q) = %q, %q", name, goos, goarch)
		}
	})
}
