package backoff

import (
	"context"
	"testing"
	"time"
)

func TestChecks(t *testing.T) {
	c := Checks{Interval: time.Minute}
	var got []time.Duration
	for range 6 {
		got = append(got, c.Next(true))
	}
	want := []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second, time.Minute, time.Minute}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("failures wait %v, want %v", got, want)
		}
	}
	if d := c.Next(false); d < 54*time.Second || d > 66*time.Second {
		t.Errorf("a success waits %s, want the interval ±10%%", d)
	}
	if d := c.Next(true); d != First {
		t.Errorf("the first failure after a success waits %s, want %s", d, First)
	}
}

func TestChecksIntervalBelowFirst(t *testing.T) {
	c := Checks{Interval: time.Second}
	if d := c.Next(true); d != time.Second {
		t.Errorf("a failure waits %s, want at most the 1s interval", d)
	}
}

func TestJitter(t *testing.T) {
	for range 1000 {
		if d := Jitter(time.Second); d < 900*time.Millisecond || d > 1100*time.Millisecond {
			t.Fatalf("Jitter(1s) = %s, want within a tenth", d)
		}
	}
}

func TestSleep(t *testing.T) {
	if !Sleep(context.Background(), time.Millisecond) {
		t.Error("Sleep of 1ms with a live context reported false")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if Sleep(ctx, time.Hour) {
		t.Error("Sleep with an ended context reported true")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Sleep with an ended context took %s", d)
	}
}
