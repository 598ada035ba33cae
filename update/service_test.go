package update_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestService: the example program runs as a system service does, with
// neither HOME nor XDG_CACHE_HOME and no data folder given. Under systemd
// with CacheDirectory= (CACHE_DIRECTORY set) it keeps its cache there and
// updates itself to 2.0.0; with no CACHE_DIRECTORY either it exits with an
// error that says what to set.
func TestService(t *testing.T) {
	t.Parallel()
	v1, v2 := example(t, "1.0.0"), example(t, "2.0.0")
	key := newKey(t)
	noHome := []string{"HOME=", "XDG_CACHE_HOME=", "CACHE_DIRECTORY="}
	args := []string{"-key", key.PublicKey().String(), "-bootstrap", bootstrap(t), "-listen", "127.0.0.1:0", "-interval", "200ms"}

	p := runProgram(t, installProgram(t, v1, t.TempDir(), 0o755), append(args, userArgs...), noHome, nil)
	p.started("1.0.0", 30*time.Second)
	if code := p.exited(30 * time.Second); code != 1 {
		t.Fatalf("without HOME or CACHE_DIRECTORY the program exited with status %d, want 1", code)
	}
	p.waitLine(true, time.Second, "selfupdate: error: no data folder:", "$HOME", "set Config.DataDir, or CacheDirectory= in a systemd unit")

	cache := t.TempDir()
	p = runProgram(t, installProgram(t, v1, t.TempDir(), 0o755), append(args, userArgs...), append(noHome, "CACHE_DIRECTORY="+cache), nil)
	p.started("1.0.0", 30*time.Second)
	p.waitLine(true, 30*time.Second, "nothing published on this channel yet")
	publish(t, publisher(t), key, "2.0.0", v2)
	p.started("2.0.0", 60*time.Second)
	p.running()
	sameFile(t, p.path, v2)
	if _, err := os.Stat(filepath.Join(cache, "relay-update", "selfupdate", "bundles")); err != nil {
		t.Fatalf("the cache is not in CACHE_DIRECTORY: %v", err)
	}
}
