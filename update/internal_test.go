package update

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/relay-sh/relay/record"
)

func TestExecutable(t *testing.T) {
	file := func(path, goos, goarch string) record.File {
		return record.File{Path: path, Size: 1, SHA256: record.SHA256([]byte(path)), Mode: 0o755, OS: goos, Arch: goarch}
	}
	for _, tc := range []struct {
		name  string
		files []record.File
		file  string // Config.File
		want  string // path, or "" for ErrNoExecutable
		msg   string // part of the error
	}{
		{"one per platform", []record.File{file("app_linux_amd64", "linux", "amd64"), file("app_darwin_arm64", "darwin", "arm64"), file("README", "", "")}, "", "app_linux_amd64", ""},
		{"for every arch of the os", []record.File{file("app_linux_all", "linux", ""), file("app_windows_amd64.exe", "windows", "amd64")}, "", "app_linux_all", ""},
		{"the only file", []record.File{file("app", "", "")}, "", "app", ""},
		{"none for this platform", []record.File{file("app_darwin_arm64", "darwin", "arm64"), file("README", "", "")}, "", "", "no file built for linux/amd64"},
		{"the only file is for another platform", []record.File{file("app_windows_amd64.exe", "windows", "amd64")}, "", "", "linux/amd64"},
		{"two for this platform", []record.File{file("app_linux_amd64", "linux", "amd64"), file("tool_linux_amd64", "linux", "amd64")}, "", "", "app_linux_amd64, tool_linux_amd64"},
		{"two files for every platform", []record.File{file("app", "", ""), file("README", "", "")}, "", "", "no file built for"},
		{"named", []record.File{file("bin/app", "", ""), file("bin/tool", "", "")}, "bin/app", "bin/app", ""},
		{"named, of this platform", []record.File{file("app_linux_amd64", "linux", "amd64"), file("tool_linux_amd64", "linux", "amd64")}, "tool_linux_amd64", "tool_linux_amd64", ""},
		{"named, missing", []record.File{file("bin/app", "", "")}, "bin/other", "", "no file bin/other"},
		{"named, of another platform", []record.File{file("app_darwin_arm64", "darwin", "arm64")}, "app_darwin_arm64", "", "is for darwin/arm64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &record.Manifest{Version: record.MustParseVersion("2.0.0"), Files: tc.files}
			got, err := executable(m, m.Select("linux", "amd64"), tc.file, "linux", "amd64")
			if tc.want != "" {
				if err != nil || got.Path != tc.want {
					t.Fatalf("got %q, %v; want %q", got.Path, err, tc.want)
				}
				return
			}
			if !errors.Is(err, ErrNoExecutable) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %q, %v; want ErrNoExecutable saying %q", got.Path, err, tc.msg)
			}
		})
	}
}

func TestExpectVersion(t *testing.T) {
	v := record.MustParseVersion("2.0.0")
	for out, ok := range map[string]bool{
		"2.0.0\n":             true,
		"v2.0.0":              true,
		"selfupdate 2.0.0 ok": true,
		"12.0.0":              false,
		"2.0.0-rc.1":          false,
		"":                    false,
		"2.0.00":              false,
	} {
		if err := ExpectVersion(v, []byte(out)); (err == nil) != ok {
			t.Errorf("ExpectVersion(%q): %v", out, err)
		}
	}
}

func TestIsHealthCheck(t *testing.T) {
	if !IsHealthCheck([]string{HealthCheckFlag}) {
		t.Error("the flag alone is not a health check")
	}
	for _, args := range [][]string{nil, {}, {"serve"}, {HealthCheckFlag, "x"}, {"x", HealthCheckFlag}} {
		if IsHealthCheck(args) {
			t.Errorf("%q is taken for a health check", args)
		}
	}
}

func TestBuildVersion(t *testing.T) {
	if v, err := BuildVersion("v1.2.3"); err != nil || v.String() != "1.2.3" {
		t.Errorf("BuildVersion(v1.2.3): %v, %v", v, err)
	}
	if _, err := BuildVersion("1.2"); !errors.Is(err, ErrNoVersion) {
		t.Errorf("BuildVersion(1.2): %v", err)
	}
	// A test binary's main module has no version.
	if _, err := BuildVersion(""); !errors.Is(err, ErrNoVersion) {
		t.Errorf("BuildVersion() in a test: %v", err)
	}
	for s, want := range map[string]string{
		"v1.4.2":                               "1.4.2",
		"v0.0.0-20250101120000-abcdefabcdef":   "0.0.0-20250101120000-abcdefabcdef",
		"v1.2.4-0.20250101120000-abcdef+dirty": "1.2.4-0.20250101120000-abcdef",
		"(devel)":                              "",
		"":                                     "",
	} {
		v, err := moduleVersion(s)
		if want == "" {
			if !errors.Is(err, ErrNoVersion) {
				t.Errorf("moduleVersion(%q): %v, %v", s, v, err)
			}
			continue
		}
		if err != nil || v.Compare(record.MustParseVersion(want)) != 0 {
			t.Errorf("moduleVersion(%q): %v, %v; want %s", s, v, err, want)
		}
	}
}

func TestCapped(t *testing.T) {
	c := &capped{max: 5}
	for _, s := range []string{"abc", "defg", "hij"} {
		if n, err := c.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write: %d, %v", n, err)
		}
	}
	if c.String() != "abcde" {
		t.Errorf("kept %q", c.String())
	}
}

func TestQuiet(t *testing.T) {
	var b strings.Builder
	l := quiet(slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelInfo})))
	l.Info("plumbing")
	l.Warn("worth knowing", "n", 1)
	l.With("k", "v").Error("broken")
	if got := b.String(); strings.Contains(got, "plumbing") || !strings.Contains(got, "level=WARN msg=\"worth knowing\" n=1") || !strings.Contains(got, "level=ERROR msg=broken k=v") {
		t.Errorf("logged:\n%s", got)
	}
	if quiet(nil) != nil {
		t.Error("quiet(nil) is not nil")
	}
}
