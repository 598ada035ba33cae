package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/transfer"
	"github.com/urfave/cli/v2"
)

func publishCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "publish",
		Usage:     "bundle files, sign and store the release record, and seed until others hold it",
		ArgsUsage: "PATH...",
		Description: "Makes the bundle (the files, and relay.json, the manifest) in the data folder, signs the\n" +
			"channel's release record and stores it in the DHT, keeping the key's other channels, then\n" +
			"seeds until --wait-for other peers hold the whole bundle. A file's platform comes from its\n" +
			"name (app_linux_amd64, app-darwin-arm64.tar.gz, app.exe) or from --os/--arch.\n" +
			"The publication time is SOURCE_DATE_EPOCH when set, so rebuilds make the same bundle.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "key", Usage: "provider key `FILE` (default: the one relay init writes)", EnvVars: []string{"RELAY_KEY"}},
			&cli.StringFlag{Name: "version", Usage: "the release's version `V` (semantic versioning)"},
			channelFlag(),
			&cli.StringFlag{Name: "notes", Usage: "release notes `TEXT`"},
			&cli.StringFlag{Name: "notes-file", Usage: "release notes from `FILE`"},
			&cli.StringFlag{Name: "expires", Value: "30d", Usage: "how long the record stays fresh, `DURATION`"},
			&cli.StringSliceFlag{Name: "web-seed", Usage: "HTTP(S) `URL` that serves the bundle's files (repeatable)"},
			&cli.StringFlag{Name: "os", Usage: "the platform `OS` of every file (default: from each file's name)"},
			&cli.StringFlag{Name: "arch", Usage: "the platform `ARCH` of every file, with --os"},
			&cli.BoolFlag{Name: "force", Usage: "publish even if the channel has this version or a higher one"},
			&cli.IntFlag{Name: "wait-for", Value: 1, Usage: "seed until `N` other peers hold the whole bundle"},
			&cli.BoolFlag{Name: "no-wait", Usage: "return once the record is stored"},
			&cli.StringFlag{Name: "timeout", Value: "1h", Usage: "give up waiting for peers after `DURATION`"},
		},
		Action: func(c *cli.Context) error {
			if err := requireFlags(c, "version"); err != nil {
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
			if c.IsSet("arch") && !c.IsSet("os") {
				return usagef("--arch needs --os")
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
			path, err := keyPath(c.String("key"))
			if err != nil {
				return err
			}
			key, err := e.loadKey(path)
			if err != nil {
				return err
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
				Key: key, Channel: channel, Version: v, Notes: notes, Sources: sources,
				Published: published, Expires: expires, WebSeeds: c.StringSlice("web-seed"), Force: c.Bool("force"),
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
				Files:    len(p.Bundle.Manifest.Files),
				LeftOut:  p.LeftOut,
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
			if !c.Bool("no-wait") && c.Int("wait-for") > 0 {
				n := c.Int("wait-for")
				e.note("seeding until %d other peer(s) hold the whole bundle (--no-wait to skip, --timeout %s)", n, timeout)
				ctx, cancel := context.WithTimeout(c.Context, timeout)
				defer cancel()
				got, err := cl.WaitForPeers(ctx, p.Release.Infohash, n)
				out.Complete = got
				if err != nil {
					if c.Context.Err() != nil {
						return fmt.Errorf("interrupted while %d of %d peers held the bundle: the record is published; keep a seeder running (relay seed)", got, n)
					}
					return withHint(fmt.Errorf("timed out after %s: %d of %d peers held the whole bundle", timeout, got, n),
						"the record is published; run `relay seed` somewhere so that users can fetch the bundle")
				}
				e.note("the whole bundle is held by %d other peer(s)", got)
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
	Complete int       `json:"peers_complete"`
	// LeftOut is what the folders held that was not bundled.
	LeftOut []transfer.LeftOut `json:"left_out"`
}

func printPublished(w io.Writer, p publishJSON) {
	was := ""
	if p.Previous != "" {
		was = " (was " + p.Previous + ")"
	}
	fmt.Fprintf(w, "published %s %s%s\n", p.Channel, p.Version, was)
	fmt.Fprintf(w, "key       %s\n", p.Key)
	fmt.Fprintf(w, "infohash  %s\n", p.Infohash)
	fmt.Fprintf(w, "magnet    %s\n", p.Magnet)
	fmt.Fprintf(w, "size      %d bytes in %d files and relay.json\n", p.Size, p.Files)
	fmt.Fprintf(w, "expires   %s\n", p.Expires.Format(time.RFC3339))
	fmt.Fprintf(w, "stored on %d DHT nodes\n", p.Stored)
}

func withPublishHint(err error) error {
	if isNotNewer(err) {
		return withHint(err, "publish a higher version, or pass --force to publish this one anyway")
	}
	return err
}
