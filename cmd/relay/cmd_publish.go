package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/transfer"
	"github.com/urfave/cli/v2"
)

func publishCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "publish",
		Usage:     "bundle files, sign and store the release record, and seed until others hold it",
		ArgsUsage: "[PATH...]",
		Description: "Makes the bundle (the files, and relay.json, the manifest) in the data folder, signs the\n" +
			"channel's release record and stores it in the DHT, keeping the key's other channels, then\n" +
			"seeds until --wait-for other peers hold the whole bundle. A file's platform comes from its\n" +
			"name (app_linux_amd64, app-darwin-arm64.tar.gz, app.exe) or from --os/--arch.\n" +
			"The publication time is SOURCE_DATE_EPOCH when set, so rebuilds make the same bundle.\n" +
			"--rollout 10 releases to 10% of the machines that watch the channel (relay watch, update);\n" +
			"with no PATH, publish signs the channel's current release --version again with the\n" +
			"--rollout and --critical given (widening 10% to 50%, or 100%: everyone), and returns once\n" +
			"the record is stored. --critical marks a security fix: no machine holds it back.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "key", Usage: "provider key `FILE` (default: the one relay init writes)", EnvVars: []string{"RELAY_KEY"}},
			&cli.StringFlag{Name: "root", Usage: "with a release key, the root `KEY` users follow: the manifest names it, so release keys that build the same files make the same bundle", EnvVars: []string{"RELAY_ROOT"}},
			&cli.StringFlag{Name: "version", Usage: "the release's version `V` (semantic versioning)"},
			channelFlag(),
			&cli.StringFlag{Name: "notes", Usage: "release notes `TEXT`"},
			&cli.StringFlag{Name: "notes-file", Usage: "release notes from `FILE`"},
			&cli.StringFlag{Name: "expires", Value: "30d", Usage: "how long the record stays fresh, `DURATION`"},
			&cli.StringSliceFlag{Name: "web-seed", Usage: "HTTP(S) `URL` that serves the bundle's files (repeatable)"},
			&cli.StringFlag{Name: "os", Usage: "the platform `OS` of every file (default: from each file's name)"},
			&cli.StringFlag{Name: "arch", Usage: "the platform `ARCH` of every file, with --os"},
			&cli.IntFlag{Name: "keep", Value: relay.DefaultPublishKeep, Usage: "releases of the channel to keep in the data folder, this one among them, `K`"},
			&cli.StringFlag{Name: "rollout", Value: "100", Usage: "the `PERCENT` of machines that take the release now, 1 to 100 (a staged rollout; widen it by publishing again without PATH)"},
			&cli.BoolFlag{Name: "critical", Usage: "a critical release (a security fix): installed by every watcher that sees it, never held back by a rollout"},
			&cli.BoolFlag{Name: "force", Usage: "publish even if the channel has this version or a higher one"},
			&cli.BoolFlag{Name: "allow-ahead", Usage: "build on a current record signed ahead of this clock (when this clock is behind); the new record is dated as far ahead"},
			&cli.IntFlag{Name: "wait-for", Value: 1, Usage: "seed until `N` other peers hold the whole bundle"},
			&cli.BoolFlag{Name: "no-wait", Usage: "return once the record is stored"},
			&cli.StringFlag{Name: "timeout", Value: "1h", Usage: "give up waiting for peers after `DURATION`"},
		}, recipientFlags()...),
		Action: func(c *cli.Context) error {
			if err := requireFlags(c, "version"); err != nil {
				return err
			}
			rcpts, err := recipients(c)
			if err != nil {
				return err
			}
			v, err := record.ParseVersion(c.String("version"))
			if err != nil {
				return usageError{fmt.Errorf("--version: %w", err)}
			}
			channel := c.String("channel")
			if err := record.ValidChannel(channel); err != nil {
				return usageError{fmt.Errorf("--channel: %w", err)}
			}
			expires, err := durationFlag(c, "expires")
			if err != nil {
				return err
			}
			timeout, err := durationFlag(c, "timeout")
			if err != nil {
				return err
			}
			notes := c.String("notes")
			if f := c.String("notes-file"); f != "" {
				if notes != "" {
					return usagef("give --notes or --notes-file, not both")
				}
				b, err := os.ReadFile(f)
				if err != nil {
					return fmt.Errorf("notes: %w", err)
				}
				notes = string(b)
			}
			if c.Int("keep") < 1 {
				return usagef("--keep must be at least 1")
			}
			if c.IsSet("arch") && !c.IsSet("os") {
				return usagef("--arch needs --os")
			}
			rollout, err := rolloutFlag(c)
			if err != nil {
				return err
			}
			var sources []transfer.Source
			for _, p := range c.Args().Slice() {
				sources = append(sources, transfer.Source{Path: p, OS: c.String("os"), Arch: c.String("arch")})
			}
			published := time.Now()
			if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
				sec, err := strconv.ParseInt(s, 10, 64)
				if err != nil {
					return usagef("SOURCE_DATE_EPOCH %q is not Unix seconds", s)
				}
				published = time.Unix(sec, 0)
			}
			var root signer.PublicKey
			if s := c.String("root"); s != "" {
				if root, err = signer.ParsePublicKey(s); err != nil {
					return usageError{fmt.Errorf("--root: %w", err)}
				}
			}
			path, err := keyPath(c.String("key"))
			if err != nil {
				return err
			}
			key, err := e.loadKey(path)
			if err != nil {
				return err
			}
			if c.NArg() == 0 {
				if !rolloutGiven(c) && !c.IsSet("critical") {
					return usagef("publish needs PATH... (or, to change the rollout of the current release, --rollout or --critical)")
				}
				return e.setRollout(c, key, v, channel, rollout)
			}
			// A build machine's run is short: its DHT node is read-only, so
			// nobody waits on it after it leaves. It still stores, announces
			// and serves the bundle.
			cl, err := e.open(c, true)
			if err != nil {
				return err
			}
			defer cl.Close()
			p, err := cl.Publish(c.Context, relay.PublishOptions{
				Key: key, Root: root, Channel: channel, Version: v, Notes: notes, Sources: sources,
				Published: published, Expires: expires, WebSeeds: c.StringSlice("web-seed"), Force: c.Bool("force"),
				AllowAhead: c.Bool("allow-ahead"),
				Keep:       c.Int("keep"),
				Recipients: rcpts,
				Rollout:    rollout,
				Critical:   c.Bool("critical"),
				OnStage: func(s relay.Stage, r record.Release) {
					switch s {
					case relay.StageResolving:
						e.note("resolving %s/%s in the DHT%s", key.PublicKey(), channel, e.andRelays())
					case relay.StageBundling:
						e.note("bundling %s: copying and hashing the files", count(len(sources), "path"))
					case relay.StageStoring:
						e.note("signing the record of %s %s and storing it in the DHT%s", r.Channel, r.Version, e.andRelays())
					}
				},
			})
			if err != nil {
				return withPublishHint(err)
			}
			for _, l := range p.LeftOut {
				// Also under --json: stderr is not the data.
				if !e.quiet {
					fmt.Fprintf(e.stderr, "relay: left out %q: %s\n", l.Path, l.Reason)
				}
			}
			out := publishJSON{
				Key:      key.PublicKey().String(),
				Channel:  channel,
				Version:  v.String(),
				Infohash: p.Release.Infohash.String(),
				Magnet:   p.Bundle.Magnet(),
				Manifest: p.Release.Manifest.String(),
				Size:     p.Release.Size,
				Expires:  p.Release.Expires,
				Stored:   p.Stats.Acked,
				Relays:   p.RelaysStored,
				Files:    len(p.Bundle.Manifest.Files),
				LeftOut:  p.LeftOut,
				Rollout:  everyone(p.Release.Rollout),
				Critical: p.Release.Critical,
			}
			if out.LeftOut == nil {
				out.LeftOut = []transfer.LeftOut{}
			}
			if p.Previous != nil {
				out.Previous = p.Previous.Version.String()
			}
			if !e.json {
				printPublished(e.stdout, out)
			}
			for _, b := range p.Pruned {
				e.note("removed %s %s from the data folder (--keep %d)", b.Manifest.Channel, b.Manifest.Version, c.Int("keep"))
			}
			if !c.Bool("no-wait") && c.Int("wait-for") > 0 {
				n := c.Int("wait-for")
				e.note("seeding until the whole bundle is held by %s (--no-wait to skip, --timeout %s)", count(n, "other peer"), timeout)
				ctx, cancel := context.WithTimeout(c.Context, timeout)
				defer cancel()
				view := e.seedView(cl, p.Release.Infohash, n)
				got, err := cl.WaitForPeers(ctx, p.Release.Infohash, n)
				view.stop()
				out.Complete = got
				if err != nil {
					if c.Context.Err() != nil {
						return fmt.Errorf("interrupted while %d of %s held the bundle: the record is published; keep a seeder running (relay seed)", got, count(n, "peer"))
					}
					peers, more, _ := cl.BundlePeers(p.Release.Infohash)
					summary, hint := describeReach(peers, more)
					return withHint(fmt.Errorf("timed out after %s: %d of %s held the whole bundle; %s", timeout, got, count(n, "peer"), summary),
						"the record is published; %s", hint)
				}
				e.note("the whole bundle is held by %s", count(got, "other peer"))
			}
			if e.json {
				return e.result(out, nil)
			}
			return nil
		},
	}
}

type publishJSON struct {
	Key      string    `json:"public_key"`
	Channel  string    `json:"channel"`
	Version  string    `json:"version"`
	Previous string    `json:"previous_version,omitempty"`
	Infohash string    `json:"infohash"`
	Magnet   string    `json:"magnet"`
	Manifest string    `json:"manifest_sha256"`
	Size     int64     `json:"size"`
	Files    int       `json:"files"`
	Expires  time.Time `json:"expires"`
	Stored   int       `json:"dht_nodes_stored"`
	Relays   int       `json:"relays_stored,omitempty"`
	Complete int       `json:"peers_complete"`
	// Rollout is the percentage of machines that take the release now.
	Rollout  int  `json:"rollout"`
	Critical bool `json:"critical"`
	// LeftOut is what the folders held that was not bundled.
	LeftOut []transfer.LeftOut `json:"left_out"`
}

func printPublished(w io.Writer, p publishJSON) {
	was := ""
	if p.Previous != "" {
		was = " (was " + p.Previous + ")"
	}
	fmt.Fprintf(w, "published %s %s%s%s\n", p.Channel, p.Version, was, rolloutWords(p.Rollout, p.Critical))
	fmt.Fprintf(w, "key       %s\n", p.Key)
	fmt.Fprintf(w, "infohash  %s\n", p.Infohash)
	fmt.Fprintf(w, "magnet    %s\n", p.Magnet)
	fmt.Fprintf(w, "size      %s (%d bytes) in %s and relay.json\n", megabytes(p.Size), p.Size, count(p.Files, "file"))
	fmt.Fprintf(w, "expires   %s\n", p.Expires.Format(time.RFC3339))
	fmt.Fprintf(w, "stored on %s\n", count(p.Stored, "DHT node"))
	if p.Relays > 0 {
		fmt.Fprintf(w, "stored on %s\n", count(p.Relays, "HTTP relay"))
	}
}

// describeReach says which peers a publisher knew and whether it reached
// them, and what to do about it: nobody came, or they came and no
// connection could be made either way.
func describeReach(peers []transfer.PeerReach, more int) (summary, hint string) {
	var named, incoming, reached []string
	for _, p := range peers {
		if p.Incoming {
			incoming = append(incoming, p.Addr.String())
			continue
		}
		s := p.Addr.String() + " " + p.State.String()
		if p.State == transfer.DialFailed && p.Err != nil {
			s += " (" + p.Err.Error() + ")"
		}
		if p.State >= transfer.Dialed {
			reached = append(reached, p.Addr.String())
		}
		if len(named) < 8 {
			named = append(named, s)
		} else {
			more++
		}
	}
	switch {
	case len(named) == 0:
		summary = "the DHT named no peer"
	default:
		summary = fmt.Sprintf("the DHT named %s: %s", count(len(named)+more, "peer"), strings.Join(named, ", "))
		if more > 0 {
			summary += fmt.Sprintf(" and %d more", more)
		}
	}
	if len(incoming) == 0 {
		summary += "; no peer connected to this machine"
	} else {
		summary += fmt.Sprintf("; %s connected to this machine: %s", count(len(incoming), "peer"), strings.Join(incoming, ", "))
	}
	switch {
	case len(named) == 0 && len(incoming) == 0:
		hint = "nobody came: no peer announced the bundle; run `relay seed --follow KEY` on a machine that reaches the same DHT"
	case len(reached) == 0 && len(incoming) == 0:
		hint = "no path: peers came, but this machine could not connect to them and none connected to it; " +
			"if both sides are behind NAT or a firewall, one of them needs an address the other can reach " +
			"(a public server, or a forwarded --listen port)"
	default:
		hint = "peers connected but none held the whole bundle; keep `relay seed` running somewhere so that users can fetch it"
	}
	return summary, hint
}

func withPublishHint(err error) error {
	if isNotNewer(err) {
		return withHint(err, "publish a higher version, or pass --force to publish this one anyway; "+
			"to widen the rollout of the current release, publish its --version with --rollout and no PATH")
	}
	if errors.Is(err, relay.ErrNotCurrent) {
		return withHint(err, "a rollout is changed for the channel's current release only: give its --version")
	}
	if errors.Is(err, relay.ErrCurrentAhead) {
		return withHint(err, "check this machine's clock. If it is right, the record came from a machine whose clock ran ahead: "+
			"DHT nodes forget it 2 h after it was last stored (relay seed no longer stores it again); publish then. "+
			"If this clock is behind, --allow-ahead builds on the record")
	}
	return err
}
