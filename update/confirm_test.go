package update_test

import (
	"os"
	"testing"
	"time"

	"github.com/relay-sh/relay/update"
)

// TestRollbackUnconfirmed: 1.0.0 runs with Config.Confirm and installs
// 2.0.0, which passes its health check but exits before it confirms that
// it works. Started again (by a service manager, here the test), 2.0.0
// finds itself unconfirmed a second time, puts 1.0.0 back and restarts
// into it; 1.0.0 refuses 2.0.0 from then on. The provider recovers its
// users with 2.0.1, which 1.0.0 installs and which confirms; 1.0.0 stays
// beside it as the previous executable.
func TestRollbackUnconfirmed(t *testing.T) {
	t.Parallel()
	v1, v2, v3 := example(t, "1.0.0"), example(t, "2.0.0"), example(t, "2.0.1")
	key := newKey(t)
	pub := publisher(t)
	exe := installProgram(t, v1, t.TempDir(), 0o750)
	args := append(programArgs(key.PublicKey(), bootstrap(t), t.TempDir()), "-confirm", "-health-check")
	args = append(args, userArgs...)
	env := []string{"SELFUPDATE_BROKEN=2.0.0"}

	p := runProgram(t, exe, args, env, nil)
	p.started("1.0.0", 30*time.Second)
	p.waitLine(true, 30*time.Second, "nothing published on this channel yet")
	publish(t, pub, key, "2.0.0", v2)
	p.started("2.0.0", 60*time.Second)
	if code := p.exited(30 * time.Second); code != 3 {
		t.Fatalf("2.0.0 exited with status %d, want 3 (broken)", code)
	}
	p.waitLine(true, time.Second, "running a new version that awaits confirmation", "version=2.0.0", "previous=1.0.0")
	sameFile(t, exe, v2)
	sameFile(t, update.PreviousPath(exe), v1)

	// The service manager starts it again: 2.0.0 rolls back and restarts
	// as 1.0.0, which refuses 2.0.0.
	p = runProgram(t, exe, args, env, nil)
	p.waitLine(false, 30*time.Second, "rolled back:", update.ErrRolledBack.Error(), "2.0.0 started again without confirming", "1.0.0 is back in "+exe)
	p.started("1.0.0", 30*time.Second)
	p.waitLine(true, 30*time.Second, "level=WARN", "refused a release", "release 2.0.0 was rolled back here")
	sameFile(t, exe, v1)
	time.Sleep(time.Second) // a few more checks
	p.running()
	sameFile(t, exe, v1)

	// The provider publishes the fix as a higher version.
	publish(t, pub, key, "2.0.1", v3)
	p.started("2.0.1", 60*time.Second)
	p.waitLine(true, 30*time.Second, "confirmed the new version", "version=2.0.1")
	p.running()
	sameFile(t, exe, v3)
	sameFile(t, update.PreviousPath(exe), v1)
	if _, err := os.Stat(exe + ".relay-confirm"); err != nil {
		t.Fatalf("the record of the rolled-back release is gone: %v", err)
	}
}
