package main

import (
	"os"
	"runtime/debug"
)

// gcPercent is relay's garbage collection target (GOGC) when the
// environment sets none. The torrent library allocates a buffer for every
// 16 KiB block it serves or receives and drops it at once, while relay's
// live heap is small (about 15 MB for a seeder of a 1 GiB bundle): at Go's
// default of 100 the collector ran every few megabytes, and took 15% of a
// seeder's CPU time serving a 1 GiB fetch. At 400 the seeder served it with
// 2.4 → 1.8 s of CPU, its anonymous memory peaking at 37 MB instead of 15.
const gcPercent = 400

// tuneGC sets the garbage collection target to gcPercent, unless GOGC is
// set: a user's setting wins.
func tuneGC() {
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(gcPercent)
	}
}
