package backoff

import (
	"context"
	"testing"
	"time"
)

func TestChecks(t *testing.T) {
	c := Checks{Interval: time.Minute}
	want := []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second, time.Minute, time.Minute}
	for i, w := range want {
		if d := c.Next(true); d < w/2 || d >= w*3/2 {
			t.Fatalf("failure %d waits %v, want %v ±50%%", i+1, d, w)
		}
	}
	if d := c.Next(false); d < 30*time.Second || d >= 90*time.Second {
		t.Errorf("a success waits %s, want the interval ±50%%", d)
	}
	if d := c.Next(true); d < First/2 || d >= First*3/2 {
		t.Errorf("the first failure after a success waits %s, want %s ±50%%", d, First)
	}
}

func TestChecksIntervalBelowFirst(t *testing.T) {
	c := Checks{Interval: time.Second}
	if d := c.Next(true); d >= 1500*time.Millisecond {
		t.Errorf("a failure waits %s, want at most the 1s interval ±50%%", d)
	}
}

// TestJitter: the waits are spread over [d/2, 3d/2) with mean d.
func TestJitter(t *testing.T) {
	var sum time.Duration
	var low, high bool
	for range 10000 {
		d := Jitter(time.Second)
		if d < 500*time.Millisecond || d >= 1500*time.Millisecond {
			t.Fatalf("Jitter(1s) = %s, want within a half", d)
		}
		low, high = low || d < 600*time.Millisecond, high || d > 1400*time.Millisecond
		sum += d
	}
	if mean := sum / 10000; mean < 980*time.Millisecond || mean > 1020*time.Millisecond || !low || !high {
		t.Errorf("Jitter(1s): mean %s, reached below 0.6 s %v, above 1.4 s %v", mean, low, high)
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
