package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/internal/faultpoint"
	"github.com/relay-sh/relay/internal/untrusted"
	"github.com/relay-sh/relay/record"
	"github.com/urfave/cli/v2"
)

// followFlags are the flags of the commands that follow a key.
func followFlags() []cli.Flag {
	return []cli.Flag{
		channelFlag(),
		&cli.BoolFlag{Name: "all-platforms", Usage: "fetch every file, not only this platform's"},
		&cli.BoolFlag{Name: "allow-expired", Usage: "install a record past its expiry (otherwise refused)"},
		&cli.BoolFlag{Name: "overwrite", Usage: "let a release replace files in --out that no earlier release of the key placed"},
		identityFlag(),
		&cli.StringFlag{Name: "stall-timeout", Value: relay.DefaultStallTimeout.String(), Usage: "give up a download that made no progress for `DURATION` (not a deadline: a slow download goes on)"},
	}
}

// fetchOptions reads KEY and the follow flags.
func fetchOptions(c *cli.Context) (relay.FetchOptions, error) {
	key, err := parseKeyArg(c.Args().First())
	if err != nil {
		return relay.FetchOptions{}, err
	}
	if err := record.ValidChannel(c.String("channel")); err != nil {
		return relay.FetchOptions{}, usageError{fmt.Errorf("--channel: %w", err)}
	}
	stall, err := durationFlag(c, "stall-timeout")
	if err != nil {
		return relay.FetchOptions{}, err
	}
	ids, err := identities(c)
	if err != nil {
		return relay.FetchOptions{}, err
	}
	return relay.FetchOptions{
		Identities:   ids,
		Key:          key,
		Channel:      c.String("channel"),
		AllPlatforms: c.Bool("all-platforms"),
		AllowExpired: c.Bool("allow-expired"),
		Overwrite:    c.Bool("overwrite"),
		StallTimeout: stall,
	}, nil
}

func fetchCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "fetch",
		Usage:     "download, verify and place the current release of a key once",
		ArgsUsage: "KEY",
		Description: "Resolves KEY's channel, runs the whole verification chain (signature, replay, rollback,\n" +
			"expiry, manifest, every file's SHA-256), and places the files in --out, each under its final\n" +
			"name only once it is whole and verified; it replaces a file there only if an earlier release\n" +
			"of KEY placed it (--overwrite: any). Prints the paths it placed. Without --out the files stay\n" +
			"in the data folder, and it prints their paths there.",
		Flags: append(followFlags(),
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "folder to place the files in, `DIR` (default: they stay in the data folder)"},
			&cli.StringFlag{Name: "timeout", Value: "10m", Usage: "give up after `DURATION`"},
		),
		Action: func(c *cli.Context) error {
			o, err := fetchOptions(c)
			if err != nil {
				return err
			}
			o.Out, o.Again, o.Move = c.String("out"), true, true
			timeout, err := durationFlag(c, "timeout")
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(c.Context, timeout)
			defer cancel()
			cl, err := e.open(c, true)
			if err != nil {
				return err
			}
			defer cl.Close()
			view := e.stageView(o, false)
			view.attach(&o)
			o.OnFound = func(r record.Release, prev record.Version) {
				e.note("found %s %s (signed by %s)", r.Channel, r.Version, o.Key)
			}
			o.OnWaiting = func(w relay.Waiting) {
				e.note("waiting %s", w)
			}
			res, err := cl.Fetch(ctx, o)
			view.finish()
			if err != nil && ctx.Err() != nil && c.Context.Err() == nil {
				return withHint(fmt.Errorf("timed out after %s: %w", timeout, err),
					"no peer served the whole bundle in time: is a seeder (relay seed --follow KEY) running?")
			}
			if err != nil {
				return withOverwriteHint(describeRefusal(res, err))
			}
			if res.Resolve.Answered == 0 && res.Relays.Held > 0 {
				e.note("no DHT node answered; the record came from %d of %s", res.Relays.Held, count(res.Relays.Asked, "HTTP relay"))
			}
			e.note("verified %s %s: signature, seq, version, expiry, manifest sha-256 and %s", res.Release.Channel, res.Release.Version, count(len(res.Files), "file"))
			for _, b := range res.Pruned {
				e.note("removed %s %s, superseded, from the data folder", b.Manifest.Channel, b.Manifest.Version)
			}
			out := fetchJSON(res)
			if o.Out == "" {
				e.note("the files are in the data folder; --out DIR places them in DIR")
			}
			return e.result(out, func(w io.Writer) {
				for _, p := range out.Files {
					fmt.Fprintln(w, p)
				}
			})
		},
	}
}

type fetchedJSON struct {
	Key      string      `json:"public_key"`
	Previous string      `json:"previous_version,omitempty"`
	UpToDate bool        `json:"up_to_date"`
	Release  releaseJSON `json:"release"`
	Bundle   string      `json:"bundle,omitempty"`
	Placed   []string    `json:"placed"`
	// Files are the paths of the release's files: in --out (Placed), or
	// in the data folder without --out.
	Files []string `json:"files"`
}

func fetchJSON(res *relay.FetchResult) fetchedJSON {
	out := fetchedJSON{
		Key:      res.Packet.Key.String(),
		Previous: res.Previous.String(),
		UpToDate: res.UpToDate,
		Release:  toReleaseJSON(res.Release),
		Placed:   res.Placed,
	}
	if res.Bundle != nil {
		out.Bundle = res.Bundle.Dir
	}
	if out.Placed == nil {
		out.Placed = []string{}
	}
	out.Files = out.Placed
	if len(out.Files) == 0 && res.Bundle != nil {
		for _, f := range res.Files {
			out.Files = append(out.Files, res.Path(f))
		}
	}
	return out
}

// withOverwriteHint says how to let a release replace a user's file.
func withOverwriteHint(err error) error {
	if errors.Is(err, relay.ErrWouldOverwrite) {
		return withHint(err, "nothing was placed; move the file away, choose another --out, or pass --overwrite to replace it")
	}
	return err
}

// describeRefusal adds what was refused to a verification error.
func describeRefusal(res *relay.FetchResult, err error) error {
	if !record.IsVerification(err) || res == nil || errors.Is(err, relay.ErrRevokedInstall) {
		return err
	}
	if res.Release.Version.IsZero() {
		return fmt.Errorf("refused the record: %w", err)
	}
	return fmt.Errorf("refused %s %s: %w", res.Release.Channel, res.Release.Version, err)
}

func watchCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "watch",
		Usage:     "follow a key: fetch, verify and hand over each new release",
		ArgsUsage: "KEY",
		Description: "Resolves KEY's channel every --interval (jittered; retried with backoff while the network\n" +
			"fails) and, for each new release that passes the whole verification chain, places its files\n" +
			"in --out, replaces the executable --install, and runs --exec with RELEASE_VERSION, RELEASE_DIR,\n" +
			"RELEASE_FILES and RELEASE_FILES_JSON in its environment. Prints one line per event (--json: one\n" +
			"JSON object per line). A release it already accepted is never fetched again, also after a\n" +
			"restart. A download that makes no progress for --stall-timeout is given up and tried again, and\n" +
			"a newer release found meanwhile (the channel is resolved every --interval) takes its place.",
		Flags: append(followFlags(),
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "folder to place each release's files in, `DIR` (default: they stay in the data folder)"},
			&cli.StringFlag{Name: "interval", Value: "10m", Usage: "time between checks, `DURATION` (at least 30s on the public DHT, 100ms with --bootstrap)"},
			&cli.StringFlag{Name: "exec", Usage: "shell `COMMAND` run for each new release"},
			&cli.StringFlag{Name: "install", Usage: "executable `PATH` replaced atomically by the release's program for this platform"},
			&cli.BoolFlag{Name: "no-serve", EnvVars: []string{"RELAY_NO_SERVE"}, Usage: "do not serve the installed release to other peers (served by default, within --upload-rate)"},
			&cli.StringFlag{Name: "upload-rate", EnvVars: []string{"RELAY_UPLOAD_RATE"}, Value: "512KiB", Usage: "serve the installed release at most `RATE` bytes a second (512KiB, 2MB...; 0: no cap)"},
		),
		Action: func(c *cli.Context) error {
			o, err := fetchOptions(c)
			if err != nil {
				return err
			}
			interval, err := e.intervalFlag(c)
			if err != nil {
				return err
			}
			o.Out = c.String("out")
			// A watcher updates a machine: it honours staged rollouts.
			o.Staged = true
			execCmd, install := c.String("exec"), c.String("install")
			if install != "" {
				if install, err = filepath.Abs(install); err != nil {
					return err
				}
				// A run killed while installing left a temporary file
				// beside install (or, on Windows, the old executable
				// moved aside): mend that before anything else.
				relay.CleanupReplaced(install)
			}
			o.Install = func(ctx context.Context, res *relay.FetchResult) error {
				return e.handOver(ctx, res, o, install, execCmd)
			}
			cfg := e.config(false)
			if cfg.UploadRate, err = rateFlag(c, "upload-rate"); err != nil {
				return err
			}
			cl, err := relay.Open(c.Context, cfg)
			if err != nil {
				return interrupted(c, err)
			}
			defer cl.Close()
			// What this data folder accepted may never have reached
			// install (fetched by `relay fetch`, or watched without
			// --install): then the first check installs it.
			o.Again = install != "" && !cl.InstalledIsAccepted(o.Key, o.Channel, install)
			view := e.stageView(o, true)
			view.attach(&o)
			o.OnFound = func(r record.Release, prev record.Version) {
				e.event(relay.Event{Time: time.Now(), Kind: relay.EventFound, Version: r.Version}, "")
			}
			e.note("watching %s/%s every %s", o.Key, o.Channel, interval)
			err = cl.Watch(c.Context, relay.WatchOptions{
				FetchOptions: o,
				Interval:     interval,
				NoServe:      c.Bool("no-serve"),
				OnEvent: func(ev relay.Event) {
					if ev.Kind != relay.EventWaiting { // the download goes on
						view.finish()
					}
					e.event(ev, install)
				},
			})
			return withOverwriteHint(err)
		},
	}
}

// handOver installs a verified release: the executable, then the exec
// hook. An error leaves the release unaccepted, to be tried again.
func (e *env) handOver(ctx context.Context, res *relay.FetchResult, o relay.FetchOptions, install, execCmd string) error {
	if install != "" {
		f, err := relay.Executable(res.Manifest(), runtime.GOOS, runtime.GOARCH)
		if err != nil {
			return err
		}
		if err := relay.ReplaceExecutable(install, res.Dir(), f); err != nil {
			return err
		}
	}
	faultpoint.Hit(faultpoint.InstallExec)
	if execCmd == "" {
		return nil
	}
	dir := o.Out
	files := res.Placed
	if dir == "" {
		dir = res.Dir()
		files = nil
		for _, f := range res.Files {
			files = append(files, res.Path(f))
		}
	}
	// The manifest refuses file names with control characters, so the
	// newline-separated list is unambiguous; the JSON list is too,
	// whatever the folder's own name holds.
	list, err := json.Marshal(append([]string{}, files...))
	if err != nil {
		return err
	}
	cmd := shellCommand(ctx, execCmd)
	cmd.Stdout, cmd.Stderr = e.stderr, e.stderr
	cmd.Env = append(os.Environ(),
		"RELEASE_KEY="+o.Key.String(),
		"RELEASE_CHANNEL="+res.Release.Channel,
		"RELEASE_VERSION="+res.Release.Version.String(),
		"RELEASE_PREVIOUS_VERSION="+res.Previous.String(),
		"RELEASE_DIR="+dir,
		"RELEASE_FILES="+strings.Join(files, "\n"),
		"RELEASE_FILES_JSON="+string(list),
	)
	if install != "" {
		cmd.Env = append(cmd.Env, "RELEASE_INSTALLED="+install)
	}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("--exec %q: %w", execCmd, err)
	}
	return nil
}

func shellCommand(ctx context.Context, s string) *exec.Cmd {
	if runtime.GOOS == "windows" {
		return exec.CommandContext(ctx, "cmd", "/C", s)
	}
	return exec.CommandContext(ctx, "/bin/sh", "-c", s)
}

// event prints a watch or seed event: a line, or a JSON object under
// --json. installed is the executable a watcher replaces (--install), if
// any: an installed event names it rather than the bundle's folder.
func (e *env) event(ev relay.Event, installed string) {
	type eventJSON struct {
		Time      time.Time  `json:"time"`
		Event     string     `json:"event"`
		Key       string     `json:"public_key,omitempty"`
		Channel   string     `json:"channel,omitempty"`
		Version   string     `json:"version,omitempty"`
		Error     string     `json:"error,omitempty"`
		Retry     string     `json:"next_check,omitempty"`
		Placed    []string   `json:"placed,omitempty"`
		Installed string     `json:"installed,omitempty"`
		Infohash  string     `json:"infohash,omitempty"`
		Stored    int        `json:"dht_nodes_stored,omitempty"`
		Expires   *time.Time `json:"expires,omitempty"`
		Waiting   string     `json:"waiting,omitempty"`
		Known     *int       `json:"peers_known,omitempty"`
		Peers     *int       `json:"peers_connected,omitempty"`
		Rollout   int        `json:"rollout,omitempty"`
		Place     *int       `json:"place,omitempty"`
		Keeping   string     `json:"keeping,omitempty"`
		Critical  bool       `json:"critical,omitempty"`
	}
	j := eventJSON{Time: ev.Time.UTC(), Event: string(ev.Kind), Version: ev.Version.String(), Stored: ev.Stored}
	if !ev.Follow.Key.IsZero() {
		j.Key, j.Channel = ev.Follow.Key.String(), ev.Follow.Channel
	}
	if ev.Err != nil {
		j.Error = ev.Err.Error()
	}
	if ev.Retry > 0 {
		j.Retry = ev.Retry.Round(time.Second).String()
	}
	if ev.Result != nil && ev.Kind == relay.EventInstalled {
		j.Placed, j.Installed = ev.Result.Placed, installed
	}
	if r := ev.Result; r != nil && (ev.Kind == relay.EventInstalled || ev.Kind == relay.EventHeldBack) {
		j.Rollout, j.Critical = r.Release.Rollout, r.Release.Critical
		if ev.Kind == relay.EventHeldBack {
			j.Place, j.Keeping = &r.Place, r.Previous.String()
		}
	}
	if ev.Bundle != nil {
		j.Infohash = ev.Bundle.Infohash.String()
	}
	if !ev.Expires.IsZero() {
		exp := ev.Expires.UTC()
		j.Expires = &exp
	}
	if w := ev.Waiting; w != nil {
		j.Waiting, j.Known, j.Peers = w.String(), &w.Known, &w.Connected
	}
	if e.json {
		e.result(j, nil)
		return
	}
	line := ev.Time.Format(time.RFC3339) + " " + j.Event
	if j.Version != "" {
		line += " " + j.Version
	}
	if j.Channel != "" {
		line += " (" + j.Key + "/" + j.Channel + ")"
	}
	switch ev.Kind {
	case relay.EventInstalled:
		if j.Installed != "" {
			line += ": " + j.Installed
		} else if len(j.Placed) > 0 {
			line += ": " + strings.Join(j.Placed, " ")
		} else if ev.Result != nil && ev.Result.Bundle != nil {
			line += ": " + ev.Result.Dir()
		}
	case relay.EventPruned:
		line += " (its bundle removed from the data folder)"
	case relay.EventWaiting:
		line += " " + j.Waiting
	case relay.EventRestored, relay.EventResigned:
		line += " on " + count(j.Stored, "DHT node")
	case relay.EventHeldBack:
		if j.Place != nil {
			// Said in words; the error says the same.
			line += fmt.Sprintf(": rolled out to %d%% of machines, this machine's place is %d; keeping %s (next check in %s)",
				j.Rollout, *j.Place, j.Keeping, j.Retry)
			fmt.Fprintln(e.stdout, line)
			return
		}
	}
	if j.Error != "" {
		line += ": " + untrusted.Escape(j.Error)
	}
	if ev.Kind == relay.EventError && j.Retry != "" {
		line += " (retrying in " + j.Retry + ")"
	}
	fmt.Fprintln(e.stdout, line)
}

func isNotNewer(err error) bool { return errors.Is(err, relay.ErrNotNewer) }
