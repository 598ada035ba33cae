// Command relay publishes, fetches, watches and seeds software releases
// signed with an ed25519 key, through the BitTorrent Mainline DHT and
// BitTorrent swarms, with no server.
//
// This package is the only one in relay that prints, reads flags and
// environment variables, or exits. It holds no logic the update package
// would need: that lives in the library packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"
)

func main() {
	os.Exit(Main())
}

// Main runs relay with the process's arguments and streams and returns its
// exit code.
func Main() int {
	tuneGC()
	defer startCPUProfile(os.Stderr)()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr)
}

// run is relay with its arguments and streams: it returns the exit code,
// having printed any error to stderr.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := newApp(stdin, stdout, stderr)
	err := app.RunContext(ctx, normalizeArgs(app, args))
	if errors.Is(err, errHelpShown) {
		return exitOK
	}
	return report(stderr, err)
}

// errHelpShown ends a run that printed help instead of doing something.
var errHelpShown = errors.New("help shown")

func init() {
	// -v is --verbose; the version flag is --version alone.
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Usage: "print relay's version"}
}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	env := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	app := &cli.App{
		Name:                 "relay",
		Usage:                "serverless, signed software distribution over BitTorrent",
		Version:              version(),
		Reader:               stdin,
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		Flags:                globalFlags(),
		Before: func(c *cli.Context) error {
			return env.load(c)
		},
		Commands: []*cli.Command{
			initCommand(env),
			keyCommand(env),
			recordCommand(env),
			publishCommand(env),
			delegateCommand(env),
			storeCommand(env),
			cosignCommand(env),
			resolveCommand(env),
			fetchCommand(env),
			watchCommand(env),
			seedCommand(env),
			dataCommand(env),
			pruneCommand(env),
			nodeCommand(env),
			demoCommand(env),
			versionCommand(env),
		},
		CommandNotFound: func(c *cli.Context, name string) {
			env.usageErr = usagef("unknown command %q", name)
		},
		OnUsageError: func(c *cli.Context, err error, isSub bool) error {
			return usageError{err}
		},
		ExitErrHandler: func(*cli.Context, error) {},
		// `relay help NAME` with an unknown NAME reaches CommandNotFound
		// and ends with no error: report it here.
		After: func(*cli.Context) error {
			err := env.usageErr
			env.usageErr = nil
			return err
		},
	}
	for _, cmd := range app.Commands {
		cmd.OnUsageError = app.OnUsageError
		for _, f := range cmd.Flags {
			addEnvVar(cmd.Name, f)
		}
		if cmd.Action != nil {
			action := cmd.Action
			cmd.Action = func(c *cli.Context) error {
				if err := checkArgs(c); err != nil {
					return err
				}
				return action(c)
			}
		}
	}
	app.Action = func(c *cli.Context) error {
		if err := env.usageErr; err != nil {
			env.usageErr = nil
			return err
		}
		if c.NArg() > 0 {
			return usagef("unknown command %q", c.Args().First())
		}
		cli.ShowAppHelp(c)
		return errHelpShown
	}
	return app
}

// perCommandFlags are the command flags whose meaning depends on the
// command (publish waits an hour by default, fetch ten minutes; watch
// checks every ten minutes, seed every minute; --version is a release's
// version, and a common name for other tools' settings), or whose plain
// name would say too little in an environment (--rollout, --critical: a
// CI job's RELAY_CRITICAL would mark every release it publishes): their
// variables name the command, RELAY_PUBLISH_TIMEOUT, so that one
// variable means one thing.
var perCommandFlags = []string{"timeout", "interval", "version", "rollout", "critical"}

// envName is the variable of a command's flag: RELAY_<FLAG>, or
// RELAY_<COMMAND>_<FLAG> for perCommandFlags.
func envName(command, flag string) string {
	name := flag
	if slices.Contains(perCommandFlags, flag) {
		name = command + "_" + flag
	}
	return "RELAY_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// addEnvVar gives a flag of command that has no environment variable the
// one envName names: --wait-for is RELAY_WAIT_FOR.
func addEnvVar(command string, f cli.Flag) {
	var envs *[]string
	switch f := f.(type) {
	case *cli.StringFlag:
		envs = &f.EnvVars
	case *cli.BoolFlag:
		envs = &f.EnvVars
	case *cli.IntFlag:
		envs = &f.EnvVars
	case *cli.Int64Flag:
		envs = &f.EnvVars
	case *cli.StringSliceFlag:
		envs = &f.EnvVars
	}
	if envs != nil && len(*envs) == 0 {
		*envs = []string{envName(command, f.Names()[0])}
	}
}

// checkArgs enforces a command's count of positional arguments, which
// urfave/cli leaves to the command: ArgsUsage names them, one word each,
// with "..." for a repeatable last one and "[...]" for optional ones.
func checkArgs(c *cli.Context) error {
	min, max := argBounds(c.Command.ArgsUsage)
	switch n := c.NArg(); {
	case n < min:
		return usagef("%s needs %s", c.Command.Name, c.Command.ArgsUsage)
	case max >= 0 && n > max:
		return usagef("%s takes %s, got %d arguments", c.Command.Name, orNone(c.Command.ArgsUsage), n)
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "no arguments"
	}
	return s
}

// argBounds reads an ArgsUsage such as "FILE", "KEY [DIR]", "PATH..." or
// "[PATH...]".
func argBounds(usage string) (min, max int) {
	for _, w := range strings.Fields(usage) {
		switch {
		case strings.HasSuffix(strings.TrimSuffix(w, "]"), "..."): // PATH... or [PATH...]
			if w[0] != '[' {
				min++
			}
			return min, -1
		case w[0] == '[':
			max++
		default:
			min++
			max++
		}
	}
	return min, max
}

// requireFlags is a usage error naming every flag of names that is not set.
func requireFlags(c *cli.Context, names ...string) error {
	var missing []string
	for _, n := range names {
		if !c.IsSet(n) {
			missing = append(missing, "--"+n)
		}
	}
	if len(missing) > 0 {
		return usagef("%s needs %s", c.Command.Name, strings.Join(missing, ", "))
	}
	return nil
}

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}
