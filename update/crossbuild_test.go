package update_test

import (
	"os"
	"os/exec"
	"testing"
)

// TestCrossCompile builds this package and the examples for the platforms
// these tests cannot run on, whose code differs (restart_windows.go, and
// darwin's executables): each must at least build. The binaries are not
// kept.
func TestCrossCompile(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	if testing.Short() {
		t.Skip("linking for other platforms takes a while")
	}
	t.Parallel()
	for _, p := range []struct{ goos, goarch string }{{"windows", "amd64"}, {"darwin", "arm64"}} {
		t.Run(p.goos+"/"+p.goarch, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command("go", "build", "-ldflags=-s -w", "./update", "./examples/...")
			cmd.Dir = ".."
			cmd.Env = append(os.Environ(), "GOOS="+p.goos, "GOARCH="+p.goarch, "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("GOOS=%s GOARCH=%s go build: %v\n%s", p.goos, p.goarch, err, out)
			}
		})
	}
}
