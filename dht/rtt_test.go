package dht

import (
	"testing"
	"time"
)

// The wait follows RFC 6298 within its bounds: the initial wait before any
// answer, mean plus four deviations after, never under minLookupWait and
// never over the node's QueryTimeout.
func TestRTTWait(t *testing.T) {
	var e rtt
	if got := e.wait(2 * time.Second); got != initialLookupWait {
		t.Fatalf("before any answer: %v, want %v", got, initialLookupWait)
	}
	if got := e.wait(300 * time.Millisecond); got != 300*time.Millisecond {
		t.Fatalf("before any answer, QueryTimeout 300ms: %v", got)
	}
	// Loopback answers: far below the floor.
	for range 20 {
		e.add(time.Millisecond)
	}
	if got := e.wait(2 * time.Second); got != minLookupWait {
		t.Fatalf("after 1 ms answers: %v, want the floor %v", got, minLookupWait)
	}
	// A path of 300 ms: the first sample sets mean 300 ms, deviation 150 ms.
	var far rtt
	far.add(300 * time.Millisecond)
	if got := far.wait(2 * time.Second); got != 900*time.Millisecond {
		t.Fatalf("after one 300 ms answer: %v, want 300ms + 4×150ms", got)
	}
	// Steady answers: the deviation shrinks, the wait comes down to the floor.
	for range 50 {
		far.add(300 * time.Millisecond)
	}
	if got := far.wait(2 * time.Second); got != minLookupWait {
		t.Fatalf("after steady 300 ms answers: %v, want %v", got, minLookupWait)
	}
	// Answers spread from 100 ms to 1.9 s: capped by QueryTimeout.
	var spread rtt
	for i := range 40 {
		spread.add(time.Duration(100+900*(i%3)) * time.Millisecond)
	}
	if got := spread.wait(2 * time.Second); got != 2*time.Second {
		t.Fatalf("widely spread answers: %v, want the cap 2s", got)
	}
}
