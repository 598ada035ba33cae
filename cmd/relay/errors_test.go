package main

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode"
)

// TestReportEscapes: whatever control characters an error holds (a web
// seed's status line, a peer's string that some path did not escape),
// relay's error printer writes one line of printable characters, with
// the escapes shown: the terminal never gets a sequence that moves the
// cursor or clears a line, and no second line can be forged.
func TestReportEscapes(t *testing.T) {
	err := fmt.Errorf("fetch: %w", errors.New("web seed: 404 \x1b[1A\x1b[2K\rrelay: verified stable 9.9.9\u202e\x07"))
	var buf bytes.Buffer
	if code := report(&buf, err); code != exitError {
		t.Errorf("exit code %d, want %d", code, exitError)
	}
	out := buf.String()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 1 {
		t.Fatalf("%d lines, want 1: %q", len(lines), out)
	}
	if strings.ContainsFunc(lines[0], func(r rune) bool { return r != ' ' && !unicode.IsPrint(r) }) {
		t.Fatalf("control characters reach the terminal: %q", out)
	}
	want := `relay: error: fetch: web seed: 404 \x1b[1A\x1b[2K\rrelay: verified stable 9.9.9\u202e\a`
	if lines[0] != want {
		t.Fatalf("got  %s\nwant %s", lines[0], want)
	}
}

// TestFlagMessage: errors of Go's flag package name flags as relay's help
// and users write them, --version, not -version.
func TestFlagMessage(t *testing.T) {
	for in, want := range map[string]string{
		"flag provided but not defined: -bogus":                    "unknown flag --bogus",
		"flag provided but not defined: -x":                        "unknown flag -x",
		"flag needs an argument: -version":                         "--version needs a value",
		`invalid value "abc" for flag -max-items: parse error`:     `--max-items: invalid value "abc": parse error`,
		`invalid boolean value "maybe" for -json: parse error`:     `--json: invalid value "maybe": parse error`,
		"resolve: nothing published under this key (-version too)": "resolve: nothing published under this key (-version too)",
	} {
		if got := flagMessage(in); got != want {
			t.Errorf("flagMessage(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestCount: counts are said in English.
func TestCount(t *testing.T) {
	for n, want := range map[int]string{0: "0 peers", 1: "1 peer", 2: "2 peers"} {
		if got := count(n, "peer"); got != want {
			t.Errorf("count(%d) = %q, want %q", n, got, want)
		}
	}
}
