package main

import (
	"io"
	"os"
	"path/filepath"
	"testing"
)

// RELAY_CPUPROFILE writes a CPU profile (gzipped, as pprof writes and
// reads them), and nothing is written without it.
func TestCPUProfileEnv(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "cpu.pprof")
	t.Setenv("RELAY_CPUPROFILE", p)
	startCPUProfile(io.Discard)()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		t.Fatalf("RELAY_CPUPROFILE wrote %d bytes, not a gzipped profile", len(b))
	}

	t.Setenv("RELAY_CPUPROFILE", "")
	startCPUProfile(io.Discard)()
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 1 {
		t.Fatalf("without RELAY_CPUPROFILE the folder holds %v (%v), want the one profile", ents, err)
	}
}
