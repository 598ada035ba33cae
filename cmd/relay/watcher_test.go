package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// watchEvent is what the tests read of an event relay watch --json prints.
type watchEvent struct {
	Event, Version, Keeping string
	Place                   *int
	Rollout                 int
}

// watcher is a relay watch --json process whose events are read as it
// prints them.
type watcher struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
	read   chan struct{} // closed when stdout ends

	mu      sync.Mutex
	events  []watchEvent
	stopped bool
}

// startWatcher starts cmd, a relay watch --json, in dir. It runs until
// owner's test ends and is then stopped with SIGINT, and must end
// cleanly: a stopped watcher would stay in the other nodes' routing
// tables, and every lookup that reached it would wait out a query timeout.
func startWatcher(t, owner testing.TB, cmd *exec.Cmd, dir string) *watcher {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w := &watcher{cmd: cmd, read: make(chan struct{})}
	w.cmd.Stderr = &w.stderr
	out, err := w.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(w.read)
		for sc := bufio.NewScanner(out); sc.Scan(); {
			var e watchEvent
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				e.Event = "not JSON: " + sc.Text()
			}
			w.mu.Lock()
			w.events = append(w.events, e)
			w.mu.Unlock()
		}
	}()
	owner.Cleanup(func() {
		w.stop(owner)
		if owner.Failed() {
			owner.Logf("relay watch in %s printed on stderr:\n%s", dir, lastLines(w.stderr.String(), 40))
		}
	})
	return w
}

// stop interrupts the watcher and waits for it to end, once.
func (w *watcher) stop(t testing.TB) {
	w.mu.Lock()
	stopped := w.stopped
	w.stopped = true
	w.mu.Unlock()
	if stopped {
		return
	}
	w.cmd.Process.Signal(os.Interrupt)
	kill := time.AfterFunc(10*time.Second, func() { w.cmd.Process.Kill() })
	defer kill.Stop()
	<-w.read
	if err := w.cmd.Wait(); err != nil {
		t.Errorf("relay watch, interrupted: %v", err)
	}
}

// count returns how many events of kind for version the watcher printed.
func (w *watcher) count(kind, version string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, e := range w.events {
		if e.Event == kind && e.Version == version {
			n++
		}
	}
	return n
}

// waitEvent waits until the watcher reports event for version.
func (w *watcher) waitEvent(t testing.TB, event, version string) {
	t.Helper()
	w.waitFor(t, event+" "+version, func(e watchEvent) bool { return e.Event == event && e.Version == version })
}

// waitFor waits until one of the watcher's events meets ok, for two
// minutes at most (a bound on a hang, not a speed).
func (w *watcher) waitFor(t testing.TB, what string, ok func(watchEvent) bool) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); ; {
		w.mu.Lock()
		events := slices.Clone(w.events)
		w.mu.Unlock()
		for _, e := range events {
			if strings.HasPrefix(e.Event, "not JSON") {
				t.Fatalf("relay watch printed a line that is %s", e.Event)
			}
			if ok(e) {
				return
			}
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, e := range events {
				fmt.Fprintf(&b, "%s %s\n", e.Event, e.Version)
			}
			t.Fatalf("relay watch did not report %s within two minutes; it reported:\n%s", what, lastLines(b.String(), 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
