//go:build relayfault && unix

package faultpoint

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestKill runs this test binary again as a child that writes through
// Writer and passes Hit, with RELAY_FAULTPOINT set to each point in turn,
// and checks that the child dies of SIGKILL right there, after the marker,
// having written exactly RELAY_FAULTPOINT_BYTES bytes.
func TestKill(t *testing.T) {
	if out := os.Getenv("FAULTPOINT_TEST_CHILD"); out != "" {
		f, err := os.Create(out)
		if err != nil {
			t.Fatal(err)
		}
		w := Writer(InstallWrite, f)
		for range 10 {
			w.Write([]byte("0123456789"))
		}
		Hit(InstallRename)
		os.Exit(0)
	}
	for _, c := range []struct {
		point  string
		killed bool
		wrote  int
	}{
		{InstallWrite, true, 25},
		{InstallRename, true, 100},
		{InstallExec, false, 100},
	} {
		out := filepath.Join(t.TempDir(), "out")
		cmd := exec.Command(os.Args[0], "-test.run=^TestKill$")
		cmd.Env = append(os.Environ(), "FAULTPOINT_TEST_CHILD="+out, "RELAY_FAULTPOINT="+c.point, "RELAY_FAULTPOINT_BYTES=25")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		killed := errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL
		if killed != c.killed || (!killed && err != nil) {
			t.Errorf("%s: the child ended with %v, want killed %v", c.point, err, c.killed)
		}
		if marked := strings.Contains(stderr.String(), Marker(c.point)+"\n"); marked != c.killed {
			t.Errorf("%s: marker printed %v, want %v:\n%s", c.point, marked, c.killed, stderr.Bytes())
		}
		if b, err := os.ReadFile(out); err != nil || len(b) != c.wrote {
			t.Errorf("%s: the child wrote %d bytes (%v), want %d", c.point, len(b), err, c.wrote)
		}
	}
}
