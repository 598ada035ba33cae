package main

import (
	"os"
	"runtime/debug"
	"testing"
)

// TestTuneGC: relay collects garbage at gcPercent unless GOGC says
// otherwise.
func TestTuneGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	if v, ok := os.LookupEnv("GOGC"); ok {
		defer os.Setenv("GOGC", v)
	}
	os.Unsetenv("GOGC")
	tuneGC()
	if got := debug.SetGCPercent(100); got != gcPercent {
		t.Errorf("without GOGC: GC percent %d, want %d", got, gcPercent)
	}
	t.Setenv("GOGC", "100")
	tuneGC()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("with GOGC=100: GC percent %d, want 100", got)
	}
}
