package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"unsafe"

	"github.com/rogpeppe/go-internal/testscript"
)

// openPTY opens a pseudo-terminal: the master side, which reads what the
// program writes, and the terminal the program is given.
func openPTY() (master, tty *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		master.Close()
		return nil, nil, fmt.Errorf("TIOCGPTN: %w", e)
	}
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		master.Close()
		return nil, nil, fmt.Errorf("TIOCSPTLCK: %w", e)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	return master, tty, nil
}

// ptySupported reports whether pseudo-terminals can be opened here (the
// script condition [pty]).
func ptySupported() bool {
	m, t, err := openPTY()
	if err != nil {
		return false
	}
	m.Close()
	t.Close()
	return true
}

// cmdPty: pty TERMFILE relay ARGS... runs relay with its stderr on a
// terminal (a pseudo-terminal, as a person at a terminal has it) and its
// stdout on a pipe, as `relay ... | script` does; it writes what the
// terminal received to TERMFILE, and stdout to the script's stdout.
func cmdPty(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 || args[1] != "relay" || neg {
		ts.Fatalf("usage: pty TERMFILE relay [ARGS...]")
	}
	master, tty, err := openPTY()
	ts.Check(err)
	defer master.Close()
	cmd := exec.Command(relayPath(ts), args[2:]...)
	cmd.Dir = ts.MkAbs(".")
	cmd.Env = os.Environ()
	for _, k := range []string{"HOME", "XDG_CONFIG_HOME", "RELAY_DATA_DIR", "RELAY_BOOTSTRAP", "PATH"} {
		cmd.Env = append(cmd.Env, k+"="+ts.Getenv(k))
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, tty
	ts.Check(cmd.Start())
	tty.Close()
	var term bytes.Buffer
	copied := make(chan error, 1)
	go func() {
		_, err := io.Copy(&term, master)
		copied <- err
	}()
	werr := cmd.Wait()
	// The master reads EIO once the program's end of the terminal is
	// closed: all it wrote has been read.
	if err := <-copied; err != nil && !errors.Is(err, syscall.EIO) {
		ts.Fatalf("reading the terminal: %v", err)
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), term.Bytes(), 0o644))
	ts.Stdout().Write(out.Bytes())
	if werr != nil {
		ts.Fatalf("relay %v: %v\n%s", args[2:], werr, term.Bytes())
	}
}
