package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestMain lets the test binary run as the relay command, so scripts run
// the real program in its own process.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){"relay": main})
}

// TestScripts runs the command-line scripts under testdata/script.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		Condition: func(cond string) (bool, error) {
			if cond == "pty" {
				return ptySupported(), nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
		Setup: func(e *testscript.Env) error {
			e.Setenv("RELAY_DATA_DIR", e.WorkDir+"/data")
			e.Setenv("XDG_CONFIG_HOME", e.WorkDir+"/config")
			e.Setenv("HOME", e.WorkDir+"/home")
			// RELAY_ENGINE=wire runs the scripts on relay's own
			// BitTorrent engine (docs/development.md).
			if v := os.Getenv("RELAY_ENGINE"); v != "" {
				e.Setenv("RELAY_ENGINE", v)
			}
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"mode":           cmdMode,
			"jsonl":          cmdJSONL,
			"exits":          cmdExits,
			"nodes":          cmdNodes,
			"setenv":         cmdSetenvStdout,
			"store":          cmdStore,
			"storebody":      cmdStoreBody,
			"waitfor":        cmdWaitFor,
			"pty":            cmdPty,
			"hostilerelease": cmdHostileRelease,
		},
	})
}

// exits CODE PROGRAM [ARGS...]: runs the program as exec does and checks
// its exit code.
func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 || neg {
		ts.Fatalf("usage: exits CODE PROGRAM [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("%s: %v", args[1], err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("%s exited %d, want %d", args[1], got, want)
	}
}

// setenv NAME [KEY]: sets NAME to the last command's stdout, trimmed,
// or to the string at KEY (dots descend) of the JSON object it printed.
func cmdSetenvStdout(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 1 || len(args) > 2 || neg {
		ts.Fatalf("usage: setenv NAME [KEY]")
	}
	out := strings.TrimSpace(ts.ReadFile("stdout"))
	if len(args) == 2 {
		var v any
		ts.Check(json.Unmarshal([]byte(out), &v))
		for _, part := range strings.Split(args[1], ".") {
			m, _ := v.(map[string]any)
			v = m[part]
		}
		s, ok := v.(string)
		if !ok {
			ts.Fatalf("%s is not a string in %s", args[1], out)
		}
		out = s
	}
	ts.Setenv(args[0], out)
}

// mode FILE PERM: the file's permission bits are PERM (octal).
func cmdMode(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: mode FILE PERM")
	}
	fi, err := os.Stat(ts.MkAbs(args[0]))
	ts.Check(err)
	want, err := strconv.ParseUint(args[1], 8, 32)
	ts.Check(err)
	if got := uint64(fi.Mode().Perm()); (got == want) == neg {
		ts.Fatalf("%s has mode %04o, want %s%04o", args[0], got, map[bool]string{true: "not ", false: ""}[neg], want)
	}
}

// jsonl stdout|FILE [KEY=VALUE...]: every line is a JSON object, and the
// last one has each top-level KEY (dots descend) equal to VALUE.
func cmdJSONL(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 1 {
		ts.Fatalf("usage: jsonl stdout|FILE [KEY=VALUE...]")
	}
	text := ts.ReadFile(args[0])
	var last map[string]any
	sc := bufio.NewScanner(strings.NewReader(text))
	n := 0
	for sc.Scan() {
		n++
		last = nil
		if err := json.Unmarshal(sc.Bytes(), &last); err != nil {
			ts.Fatalf("line %d is not a JSON object: %v\n%s", n, err, sc.Text())
		}
	}
	if n == 0 {
		ts.Fatalf("no JSON lines in %s", args[0])
	}
	for _, kv := range args[1:] {
		k, want, _ := strings.Cut(kv, "=")
		var v any = last
		for _, part := range strings.Split(k, ".") {
			m, _ := v.(map[string]any)
			v = m[part]
		}
		got := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(mustJSON(v)), `"`), `"`)
		if (got == want) == neg {
			ts.Fatalf("%s = %s, want %s", k, got, want)
		}
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// startUntilCleanup starts cmd, a long-running relay, and stops it with
// SIGINT (SIGKILL 10 s later) when t ends; what it printed on stderr is
// shown, under label, if t failed.
func startUntilCleanup(t testing.TB, cmd *exec.Cmd, label string) {
	t.Helper()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		stop := time.AfterFunc(10*time.Second, func() { cmd.Process.Kill() })
		defer stop.Stop()
		cmd.Wait()
		if t.Failed() {
			t.Logf("relay %s printed on stderr:\n%s", label, stderr.Bytes())
		}
	})
}
