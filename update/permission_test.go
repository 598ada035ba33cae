package update_test

import (
	"errors"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/relay-sh/relay/transfer"
	"github.com/relay-sh/relay/update"
)

// TestRunAsAnotherUser: the example program runs as nobody from a folder
// root owns, in Run(Install) mode, when 2.0.0 is published. Run returns
// at once with ErrPermission, saying which folder it cannot write,
// before downloading anything: the program exits with its error, the
// executable as it was, no bundle in its cache.
func TestRunAsAnotherUser(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("needs root, to run the program as nobody")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	v1, v2 := example(t, "1.0.0"), example(t, "2.0.0")
	key := newKey(t)
	publish(t, publisher(t), key, "2.0.0", v2)

	// t.TempDir's folders are root's alone: nobody needs a way in.
	base, err := os.MkdirTemp("", "relay-update-perm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	bin, data := filepath.Join(base, "bin"), filepath.Join(base, "data")
	for _, d := range []string{bin, data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{base, bin} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(data, uid, gid); err != nil {
		t.Fatal(err)
	}
	exe := installProgram(t, v1, bin, 0o755)

	args := append(programArgs(key.PublicKey(), bootstrap(t), data), "-mode", "next-start")
	p := runProgram(t, exe, append(args, userArgs...), []string{"HOME=" + data},
		&syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}})
	p.started("1.0.0", 30*time.Second)
	if code := p.exited(90 * time.Second); code != 1 {
		t.Fatalf("the program exited with status %d, want 1", code)
	}
	i := p.waitLine(true, time.Second, "selfupdate: error:", update.ErrPermission.Error(), "cannot replace "+exe, "cannot create a file in "+bin, "permission denied", "uid "+nobody.Uid)
	t.Logf("the program said: %s", p.lines(true)[i])
	for _, l := range p.lines(true) {
		if strings.Contains(l, "could not install") || strings.Contains(l, "retry=") {
			t.Errorf("the program retried: %s", l)
		}
	}
	sameFile(t, exe, v1)
	onlyFile(t, bin, "selfupdate")
	if entries, err := os.ReadDir(transfer.BundlesDir(data)); err == nil && len(entries) > 0 || err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the cache holds bundles (%v, %v): the release was downloaded", entries, err)
	}
}
