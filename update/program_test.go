package update_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/relay-sh/relay/signer"
)

// program is the example program running as a process, installed in a
// folder of its own, its output collected line by line.
type program struct {
	t    *testing.T
	cmd  *exec.Cmd
	path string // the installed executable
	done chan struct{}

	mu     sync.Mutex
	stdout []string
	stderr []string
}

// userArgs are the arguments the program is given besides its flags; a
// restart must give them back unchanged.
var userArgs = []string{"one", "two words", "--three", ""}

// startProgram installs the binary bin as "selfupdate" (mode 0750) in a
// folder of its own and runs it, following key on the local DHT (through
// bootstrap) with a short interval, with userArgs and the extra
// environment env. It is stopped when the test ends.
func startProgram(t *testing.T, bin string, key signer.PublicKey, bootstrap string, healthCheck bool, env ...string) *program {
	t.Helper()
	exe := installProgram(t, bin, t.TempDir(), 0o750)
	args := programArgs(key, bootstrap, t.TempDir())
	if healthCheck {
		args = append(args, "-health-check")
	}
	return runProgram(t, exe, append(args, userArgs...), env, nil)
}

// installProgram copies the binary bin to dir/selfupdate with mode and
// returns its path.
func installProgram(t *testing.T, bin, dir string, mode os.FileMode) string {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("these tests follow one process through its restart, which on Windows is a new process")
	}
	exe := filepath.Join(dir, "selfupdate")
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(exe, mode); err != nil {
		t.Fatal(err)
	}
	return exe
}

// programArgs are the flags that make the program follow key on the local
// DHT through bootstrap, with its cache in dataDir and a short interval.
func programArgs(key signer.PublicKey, bootstrap, dataDir string) []string {
	return []string{
		"-key", key.String(),
		"-bootstrap", bootstrap,
		"-listen", "127.0.0.1:0",
		"-data-dir", dataDir,
		"-interval", "200ms",
	}
}

// runProgram runs exe with args, the extra environment env and, if set,
// the system attributes attr (another user, say). It is stopped when the
// test ends.
func runProgram(t *testing.T, exe string, args, env []string, attr *syscall.SysProcAttr) *program {
	t.Helper()
	p := &program{t: t, path: exe, done: make(chan struct{})}
	p.cmd = exec.Command(exe, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.SysProcAttr = attr
	p.cmd.Stdout = &lineWriter{add: func(l string) { p.add(&p.stdout, l) }}
	p.cmd.Stderr = &lineWriter{add: func(l string) { p.add(&p.stderr, l) }}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.stop)
	return p
}

// exited waits for the program to exit on its own and returns its exit
// status; it fails the test if it runs beyond timeout.
func (p *program) exited(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		p.t.Fatalf("the program still runs after %v", timeout)
		return 0
	}
}

// stop interrupts the program, kills it if it does not end, and logs what
// it wrote if the test failed or runs verbosely.
func (p *program) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
	if p.t.Failed() || testing.Verbose() {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.t.Logf("program stdout:\n%s", strings.Join(p.stdout, "\n"))
		p.t.Logf("program stderr:\n%s", strings.Join(p.stderr, "\n"))
	}
}

func (p *program) add(to *[]string, line string) {
	p.mu.Lock()
	*to = append(*to, line)
	p.mu.Unlock()
}

func (p *program) lines(stderr bool) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if stderr {
		return slices.Clone(p.stderr)
	}
	return slices.Clone(p.stdout)
}

// waitLine waits until a line of stdout (or stderr) contains all of
// parts, and returns its index; it fails the test if the program exits or
// the timeout passes first.
func (p *program) waitLine(stderr bool, timeout time.Duration, parts ...string) int {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for i, l := range p.lines(stderr) {
			if containsAll(l, parts) {
				return i
			}
		}
		select {
		case <-p.done:
			p.t.Fatalf("the program exited (%v) before writing %q", p.cmd.ProcessState, parts)
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("the program did not write %q within %v", parts, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// running fails the test unless the program is still running.
func (p *program) running() {
	p.t.Helper()
	select {
	case <-p.done:
		p.t.Fatalf("the program exited: %v", p.cmd.ProcessState)
	default:
	}
}

// started returns what the program printed when it started as version v:
// the line with its version and process ID, and the line with its
// arguments, which must be userArgs.
func (p *program) started(v string, timeout time.Duration) {
	p.t.Helper()
	i := p.waitLine(false, timeout, fmt.Sprintf("selfupdate %s pid=%d", v, p.cmd.Process.Pid))
	want := fmt.Sprintf("args: %q", userArgs)
	for {
		out := p.lines(false)
		if len(out) > i+1 {
			if out[i+1] != want {
				p.t.Fatalf("version %s printed %s, want %s", v, out[i+1], want)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lineWriter passes each complete line written to it to add.
type lineWriter struct {
	add func(string)
	buf []byte
}

func (w *lineWriter) Write(b []byte) (int, error) {
	w.buf = append(w.buf, b...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		w.add(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
}
