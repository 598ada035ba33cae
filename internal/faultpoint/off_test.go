//go:build !relayfault

package faultpoint

import (
	"bytes"
	"testing"
)

// TestOff checks that a normal build ignores RELAY_FAULTPOINT: Hit
// returns and Writer hands back its writer.
func TestOff(t *testing.T) {
	t.Setenv("RELAY_FAULTPOINT", InstallWrite)
	Hit(InstallWrite)
	var b bytes.Buffer
	if w := Writer(InstallWrite, &b); w != &b {
		t.Fatalf("Writer returned %T, want its writer", w)
	}
}
