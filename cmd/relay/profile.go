package main

import (
	"fmt"
	"io"
	"os"
	"runtime/pprof"
)

// startCPUProfile writes a CPU profile of the whole run to the file
// RELAY_CPUPROFILE names, for profiling the command as a user runs it
// (docs/performance.md); unset, it does nothing. The returned function
// stops the profile and closes the file. It is for development, not a
// documented setting.
func startCPUProfile(stderr io.Writer) func() {
	p := os.Getenv("RELAY_CPUPROFILE")
	if p == "" {
		return func() {}
	}
	f, err := os.Create(p)
	if err != nil {
		fmt.Fprintf(stderr, "relay: RELAY_CPUPROFILE: %v\n", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintf(stderr, "relay: RELAY_CPUPROFILE: %v\n", err)
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintf(stderr, "relay: RELAY_CPUPROFILE: %v\n", err)
		}
	}
}
