//go:build unix

package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/relay-sh/relay/dht/localnet"
	"github.com/relay-sh/relay/internal/atomicfile"
	"github.com/relay-sh/relay/internal/faultpoint"
)

// partialBytes is how much of the new executable a run killed at
// faultpoint.InstallWrite has written.
const partialBytes = 1000

// TestWatchInstallKilled kills `relay watch --install` with SIGKILL at each
// fault point of an install of 2.0.0 over 1.0.0 and checks what is left:
// the executable is exactly the old one before the rename and exactly the
// new one after, still executable; the state names 2.0.0 only once the new
// executable is in place; and the next run finishes or repeats the install
// and leaves no temporary file. The relay it runs is built with the
// relayfault tag, on a local DHT with a real seeder.
func TestWatchInstallKilled(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command to build relay with the relayfault tag")
	}
	t.Parallel()
	k := &killTest{
		top:  t,
		bin:  filepath.Join(t.TempDir(), "relay"),
		boot: localnet.ForTest(t, localnet.Config{Nodes: 8}).Bootstrap.Addr().String(),
		work: t.TempDir(),
		exes: map[string][]byte{"1.0.0": program("1.0.0"), "2.0.0": program("2.0.0")},
	}
	build := exec.Command("go", "build", "-tags", "relayfault", "-o", k.bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags relayfault: %v\n%s", err, out)
	}
	for v, b := range k.exes {
		dir := filepath.Join(k.work, "rel-"+v)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "app"), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The seeder and the publisher log (-v) to stderr, shown if the test
	// fails.
	pubDir := filepath.Join(k.work, "pub")
	k.pub = strings.TrimSpace(k.run(t, pubDir, "init", "--key", "k.key"))
	k.start(t, filepath.Join(k.work, "seeder"), "seed", "-v", "--follow", k.pub, "--interval", "300ms")
	k.run(t, pubDir, "-v", "publish", "--key", "k.key", "--version", "1.0.0", "--timeout", "60s", filepath.Join(k.work, "rel-1.0.0"))

	// A watcher installs 1.0.0 where there was nothing; every case starts
	// from a copy of its state and executable, taken before 2.0.0 is
	// published (the watcher goes on and installs it too).
	base, v1 := filepath.Join(k.work, "base"), filepath.Join(k.work, "v1")
	k.watch(t, k.top, base).waitEvent(t, "installed", "1.0.0")
	k.checkExe(t, base, "1.0.0")
	copyState(t, base, v1)
	k.run(t, pubDir, "-v", "publish", "--key", "k.key", "--version", "2.0.0", "--timeout", "60s", filepath.Join(k.work, "rel-2.0.0"))

	for _, c := range []struct {
		point string
		// exe and state: the version of the executable the kill leaves,
		// and the one the state names; temp: the bytes of the temporary
		// file it leaves beside the executable (nil: none); hooks: the
		// versions --exec was run for after the killed run, and after
		// the next; next: what the next run reports.
		exe, state string
		temp       []byte
		hooks      [2]string
		next       string
	}{
		{faultpoint.InstallBefore, "1.0.0", "1.0.0", nil, [2]string{"", "2.0.0"}, "installed"},
		{faultpoint.InstallWrite, "1.0.0", "1.0.0", k.exes["2.0.0"][:partialBytes], [2]string{"", "2.0.0"}, "installed"},
		{faultpoint.InstallRename, "1.0.0", "1.0.0", k.exes["2.0.0"], [2]string{"", "2.0.0"}, "installed"},
		{faultpoint.InstallExec, "2.0.0", "1.0.0", nil, [2]string{"", "2.0.0"}, "installed"},
		{faultpoint.InstallState, "2.0.0", "1.0.0", nil, [2]string{"2.0.0", "2.0.0 2.0.0"}, "installed"},
		{faultpoint.InstallSaved, "2.0.0", "2.0.0", nil, [2]string{"2.0.0", "2.0.0"}, "up-to-date"},
	} {
		t.Run(c.point, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(k.work, c.point)
			copyState(t, v1, dir)

			stdout := k.runKilled(t, dir, c.point, k.watchArgs()...)
			if strings.Contains(stdout, `"event":"installed"`) {
				t.Errorf("the killed run reported an install:\n%s", stdout)
			}
			k.checkExe(t, dir, c.exe)
			k.checkState(t, dir, c.state)
			checkTemp(t, dir, c.temp)
			checkHooks(t, dir, c.hooks[0])

			k.watch(t, k.top, dir).waitEvent(t, c.next, "2.0.0")
			k.checkExe(t, dir, "2.0.0")
			k.checkState(t, dir, "2.0.0")
			checkTemp(t, dir, nil)
			checkHooks(t, dir, c.hooks[1])
		})
	}

	// Killed while placing a file into an --out folder: relay watch --out
	// copies it from the bundle it goes on seeding, and is killed while
	// writing it; relay fetch --out moves it out of the bundle, and is
	// killed with the whole file beside its final name. Either way the
	// folder keeps its old file, beside a partial or whole temporary file,
	// and the next fetch places the new release and removes the leftover.
	// The test put out/app there, not a release: --overwrite.
	for _, c := range []struct {
		point string
		args  []string
		temp  []byte
	}{
		{faultpoint.PlaceWrite, []string{"-v", "watch", k.pub, "--out", "out", "--overwrite", "--interval", "1h", "--json"}, k.exes["2.0.0"][:partialBytes]},
		{faultpoint.PlaceRename, []string{"-v", "fetch", k.pub, "--out", "out", "--overwrite", "--timeout", "60s"}, k.exes["2.0.0"]},
	} {
		t.Run(c.point, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(k.work, c.point)
			copyState(t, v1, dir)
			out := filepath.Join(dir, "out")
			if err := os.MkdirAll(out, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(out, "app"), k.exes["1.0.0"], 0o755); err != nil {
				t.Fatal(err)
			}
			k.runKilled(t, dir, c.point, c.args...)
			k.checkExe(t, out, "1.0.0")
			k.checkState(t, dir, "1.0.0")
			checkTemp(t, out, c.temp)
			k.run(t, dir, "-v", "fetch", k.pub, "--out", "out", "--overwrite", "--timeout", "60s")
			k.checkExe(t, out, "2.0.0")
			k.checkState(t, dir, "2.0.0")
			checkTemp(t, out, nil)
		})
	}

	// Not a kill: `relay fetch` accepted 2.0.0 into the data folder
	// without installing it; a watcher given --install installs it rather
	// than taking it as done.
	t.Run("fetched, not installed", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(k.work, "fetched")
		copyState(t, v1, dir)
		k.run(t, dir, "fetch", k.pub, "--out", "out", "--timeout", "60s")
		k.checkState(t, dir, "2.0.0")
		k.checkExe(t, dir, "1.0.0")
		k.watch(t, k.top, dir).waitEvent(t, "installed", "2.0.0")
		k.checkExe(t, dir, "2.0.0")
		k.checkState(t, dir, "2.0.0")
	})
}

// killTest is the relay built with the relayfault tag, and what its runs
// share: the local DHT's bootstrap address, the test's folder, the
// publisher's key and the installed program of each version.
type killTest struct {
	top                  *testing.T
	bin, boot, work, pub string
	exes                 map[string][]byte
}

// program is an executable shell script of version v, padded to 256 KiB
// so that it is written in many pieces.
func program(v string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "#!/bin/sh\necho app %s\n", v)
	for b.Len() < 256<<10 {
		fmt.Fprintf(&b, "# %s padding at %d\n", v, b.Len())
	}
	return b.Bytes()
}

// command is relay run in dir with its data folder dir/data, on the local
// DHT, with an environment of its own.
func (k *killTest) command(ctx context.Context, dir string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, k.bin, args...)
	cmd.Dir = dir
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + dir,
		"RELAY_BOOTSTRAP=" + k.boot,
		"RELAY_LISTEN=127.0.0.1:0",
		"RELAY_DATA_DIR=" + filepath.Join(dir, "data"),
	}
	return cmd
}

// run runs relay in dir to its end and returns its stdout.
func (k *killTest) run(t *testing.T, dir string, args ...string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := k.command(ctx, dir, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("relay %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return stdout.String()
}

// start starts relay in dir and stops it with SIGINT when the test ends.
func (k *killTest) start(t *testing.T, dir string, args ...string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	startUntilCleanup(t, k.command(context.Background(), dir, args...), strings.Join(args, " "))
}

// watchArgs are the arguments of every watch: install dir/app, write each
// handed-over version to dir/hooks.log, and log (-v) to stderr, which a
// failure shows.
func (k *killTest) watchArgs() []string {
	return []string{"-v", "watch", k.pub, "--install", "app", "--interval", "1s", "--json",
		"--exec", `echo "$RELEASE_VERSION" >> hooks.log`}
}

// watch starts relay watch --install app in dir, with the test's hook;
// owner's end stops it (startWatcher).
func (k *killTest) watch(t, owner testing.TB, dir string) *watcher {
	t.Helper()
	return startWatcher(t, owner, k.command(context.Background(), dir, k.watchArgs()...), dir)
}

// runKilled runs relay in dir with the fault point armed, checks that it
// printed the point's marker and died of SIGKILL, and returns what it
// printed on stdout.
func (k *killTest) runKilled(t *testing.T, dir, point string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	name := "relay " + strings.Join(args, " ")
	cmd := k.command(ctx, dir, args...)
	cmd.Env = append(cmd.Env, "RELAY_FAULTPOINT="+point, fmt.Sprintf("RELAY_FAULTPOINT_BYTES=%d", partialBytes))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s did not reach %s within a minute:\n%s\n%s", name, point, stdout.Bytes(), stderr.Bytes())
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("%s with %s armed ended with %v, want a kill:\n%s", name, point, err, stderr.Bytes())
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("%s with %s armed ended with %v, want SIGKILL:\n%s", name, point, err, stderr.Bytes())
	}
	if !strings.Contains(stderr.String(), faultpoint.Marker(point)+"\n") {
		t.Fatalf("%s was killed without reaching %s:\n%s", name, point, stderr.Bytes())
	}
	return stdout.String()
}

// checkExe checks that dir/app is exactly the program of version, with
// mode 0755, and runs.
func (k *killTest) checkExe(t *testing.T, dir, version string) {
	t.Helper()
	exe := filepath.Join(dir, "app")
	got := sha256.Sum256(readFile(t, exe))
	if got != sha256.Sum256(k.exes[version]) {
		t.Fatalf("%s is not exactly the %s executable: sha-256 %x (1.0.0 %x, 2.0.0 %x)", exe, version, got,
			sha256.Sum256(k.exes["1.0.0"]), sha256.Sum256(k.exes["2.0.0"]))
	}
	if fi, err := os.Stat(exe); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("%s: mode %v, %v; want 0755", exe, fi.Mode(), err)
	}
	if out, err := exec.Command(exe).Output(); err != nil || string(out) != "app "+version+"\n" {
		t.Fatalf("running %s: %q, %v", exe, out, err)
	}
}

// checkState checks that the watcher in dir accepted version last.
func (k *killTest) checkState(t *testing.T, dir, version string) {
	t.Helper()
	var st struct{ Version string }
	if err := json.Unmarshal(readFile(t, filepath.Join(dir, "data", "state", k.pub, "stable.json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Version != version {
		t.Fatalf("the state names %s, want %s", st.Version, version)
	}
}

// copyState makes dir a watcher that installed what the watcher in base
// did: base's executable and state, and none of its DHT node's identity.
func copyState(t *testing.T, base, dir string) {
	t.Helper()
	err := filepath.WalkDir(filepath.Join(base, "data", "state"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(base, p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, rel)), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, rel), readFile(t, p), 0o644)
	})
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "app"), readFile(t, filepath.Join(base, "app")), 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// checkTemp checks the temporary files of an install beside dir/app: one
// holding exactly want, or none when want is nil.
func checkTemp(t *testing.T, dir string, want []byte) {
	t.Helper()
	temps, err := filepath.Glob(filepath.Join(dir, atomicfile.TempPrefix+"*"))
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case want == nil && len(temps) > 0:
		t.Errorf("temporary files left: %q", temps)
	case want != nil && len(temps) != 1:
		t.Errorf("temporary files left: %q, want one", temps)
	case want != nil && !bytes.Equal(readFile(t, temps[0]), want):
		t.Errorf("the temporary file left has %d bytes, want the first %d of the new executable (of %d)", len(readFile(t, temps[0])), len(want), len(program("2.0.0")))
	}
}

// checkHooks checks that --exec wrote the versions want (space-separated)
// to dir/hooks.log, in order.
func checkHooks(t *testing.T, dir, want string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "hooks.log"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if got := strings.Join(strings.Fields(string(b)), " "); got != want {
		t.Fatalf("--exec ran for %q, want %q", got, want)
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
