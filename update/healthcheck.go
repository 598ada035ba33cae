package update

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/relay-sh/relay/record"
)

// HealthCheckFlag is the argument a new executable is started with for
// its health check, unless HealthCheck.Args says otherwise.
const HealthCheckFlag = "--relay-health-check"

// DefaultHealthCheckTimeout is how long a new executable has to answer its
// health check when HealthCheck.Timeout is zero.
const DefaultHealthCheckTimeout = 10 * time.Second

// maxHealthOutput caps what is kept of a health check's stdout and stderr.
const maxHealthOutput = 64 << 10

// HealthCheck makes Apply start the new executable, once it is in place,
// before keeping it. The new executable must exit with status 0 within
// Timeout, and what it writes on stdout must satisfy Expect; otherwise the
// old executable is put back and Apply fails with ErrHealthCheck, saying
// why. Until the check passes the old executable is kept beside the new
// one, as <executable>.relay-backup.
//
// A program answers the default check by calling IsHealthCheck first
// thing in main:
//
//	if update.IsHealthCheck(os.Args[1:]) {
//		fmt.Println(version) // after any check of its own
//		return
//	}
type HealthCheck struct {
	// Args are the new executable's arguments; nil means HealthCheckFlag
	// alone. It inherits this program's environment and runs in its
	// working folder, with no standard input.
	Args []string
	// Timeout is how long the new executable has to exit; zero means
	// DefaultHealthCheckTimeout.
	Timeout time.Duration
	// Expect judges the new executable's stdout, given the version of the
	// release; nil means that one of its words must be that version (1.2.3
	// or v1.2.3), so that a build that answers with another version than
	// its release's is not kept.
	Expect func(v record.Version, stdout []byte) error
}

// IsHealthCheck reports whether args, a program's arguments without its
// name (os.Args[1:]), are those of the default health check: HealthCheckFlag
// alone. The program should then do any check of its own, print its
// version on stdout and exit with status 0, or exit with another status to
// refuse the update.
func IsHealthCheck(args []string) bool {
	return len(args) == 1 && args[0] == HealthCheckFlag
}

// ExpectVersion is the default HealthCheck.Expect: one of the words of
// stdout must be v, with or without a leading "v".
func ExpectVersion(v record.Version, stdout []byte) error {
	want := v.String()
	if slices.ContainsFunc(strings.Fields(string(stdout)), func(w string) bool {
		return w == want || w == "v"+want
	}) {
		return nil
	}
	return fmt.Errorf("it answered %q, not its version %s", clip(stdout), want)
}

// run starts exe and checks its answer.
func (hc *HealthCheck) run(ctx context.Context, exe string, v record.Version) error {
	timeout := hc.Timeout
	if timeout <= 0 {
		timeout = DefaultHealthCheckTimeout
	}
	args := hc.Args
	if args == nil {
		args = []string{HealthCheckFlag}
	}
	expect := hc.Expect
	if expect == nil {
		expect = ExpectVersion
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var stdout, stderr *capped
	var err error
	for try := 0; ; try++ {
		cmd := exec.CommandContext(cctx, exe, args...)
		stdout, stderr = &capped{max: maxHealthOutput}, &capped{max: maxHealthOutput}
		cmd.Stdout, cmd.Stderr = stdout, stderr
		// Output pipes held open by a child of the new executable must
		// not hold the check beyond its time.
		cmd.WaitDelay = time.Second
		err = cmd.Run()
		// A process forked elsewhere in this program while the new file
		// was open for writing holds it open until it execs: "text file
		// busy" for a moment.
		if !errors.Is(err, syscall.ETXTBSY) || try == 10 || cctx.Err() != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("%w: interrupted: %w", ErrHealthCheck, ctx.Err())
	case cctx.Err() != nil:
		return fmt.Errorf("%w: it did not answer within %s", ErrHealthCheck, timeout)
	case err != nil:
		msg := lastLine(stderr.Bytes())
		if msg != "" {
			return fmt.Errorf("%w: %w: %s", ErrHealthCheck, err, msg)
		}
		return fmt.Errorf("%w: %w", ErrHealthCheck, err)
	}
	if err := expect(v, stdout.Bytes()); err != nil {
		return fmt.Errorf("%w: %w", ErrHealthCheck, err)
	}
	return nil
}

// capped is a buffer that keeps the first max bytes written to it.
type capped struct {
	bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.Len(); room > 0 {
		c.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return clip([]byte(strings.TrimSpace(lines[len(lines)-1])))
}

func clip(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		return s[:197] + "..."
	}
	return s
}
