// Package spectest checks that a specification under docs/spec shows the
// test vectors a test computes, so that the document cannot drift from the
// code. It is for tests only: it never prints, and reports through
// testing.TB.
package spectest

import (
	"os"
	"strings"
	"testing"
)

// unwrap drops the line breaks, spaces and tabs a specification wraps long
// hex and base64 in.
var unwrap = strings.NewReplacer("\n", "", " ", "", "\t", "")

// Check reports, as a test error, each string of want that the file at
// path does not show, either verbatim or wrapped (spaces, tabs and line
// breaks ignored on both sides).
func Check(t testing.TB, path string, want []string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	spec := string(b)
	flat := unwrap.Replace(spec)
	for _, w := range want {
		if !strings.Contains(spec, w) && !strings.Contains(flat, unwrap.Replace(w)) {
			t.Errorf("%s does not show\n%s", path, w)
		}
	}
}
