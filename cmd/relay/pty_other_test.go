//go:build !linux

package main

import "github.com/rogpeppe/go-internal/testscript"

// ptySupported reports false: pseudo-terminals are opened the Linux way
// only (pty_linux_test.go); scripts skip what needs one ([pty]).
func ptySupported() bool { return false }

func cmdPty(ts *testscript.TestScript, neg bool, args []string) {
	ts.Fatalf("pty: no pseudo-terminals here; guard the command with [pty]")
}
