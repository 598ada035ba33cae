package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/relay-sh/relay"
	"github.com/urfave/cli/v2"
)

// pruneFlags are the flags that say what relay prune removes; relay data
// takes them too, to show what it would.
func pruneFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "keep", Usage: "keep the newest `K` releases of every channel (default: what publish and seed --keep recorded, else 1)"},
		&cli.BoolFlag{Name: "partial", Usage: "also remove downloads that have not got their manifest (a fetch would resume them)"},
	}
}

func pruneOptions(c *cli.Context) (relay.PruneOptions, error) {
	if c.IsSet("keep") && c.Int("keep") < 1 {
		return relay.PruneOptions{}, usagef("--keep must be at least 1")
	}
	return relay.PruneOptions{Keep: c.Int("keep"), Partial: c.Bool("partial")}, nil
}

func dataCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "data",
		Usage: "list what the data folder holds: each bundle's key, channel, version, status and size",
		Description: "Lists every bundle in the data folder with its status: current (the release accepted for\n" +
			"its channel), kept (among the newest a role keeps: publish and seed --keep), old (relay prune\n" +
			"removes it) or partial (a download in progress). Changes nothing; runs beside a seeder.",
		Flags: pruneFlags(),
		Action: func(c *cli.Context) error {
			o, err := pruneOptions(c)
			if err != nil {
				return err
			}
			u, err := relay.ListData(e.dataDir, o)
			if err != nil {
				return err
			}
			return e.result(dataJSON(e.dataDir, u), func(w io.Writer) {
				printData(w, e.dataDir, u)
			})
		},
	}
}

func pruneCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "prune",
		Usage: "remove the bundles no role needs from the data folder",
		Description: "Removes the bundles relay data lists as old: those beyond the newest releases each role\n" +
			"keeps (publish and seed --keep; one for fetch and watch), never the release a channel accepted.\n" +
			"Files placed in --out or installed are never touched. Stops if another relay uses the folder.",
		Flags: append(pruneFlags(),
			&cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "remove nothing; print what would be removed"},
		),
		Action: func(c *cli.Context) error {
			o, err := pruneOptions(c)
			if err != nil {
				return err
			}
			o.DryRun = c.Bool("dry-run")
			_, removed, err := relay.PruneData(e.dataDir, o)
			var freed int64
			out := pruneJSON{DryRun: o.DryRun, Removed: []storedJSON{}}
			for _, b := range removed {
				freed += b.Bytes
				out.Removed = append(out.Removed, toStoredJSON(b))
			}
			out.Freed = freed
			if perr := e.result(out, func(w io.Writer) {
				verb := "removed"
				if o.DryRun {
					verb = "would remove"
				}
				for _, b := range removed {
					fmt.Fprintf(w, "%s %s %s\n", verb, bundleLabel(b), megabytes(b.Bytes))
				}
				fmt.Fprintf(w, "%s %s in %s\n", map[bool]string{false: "freed", true: "would free"}[o.DryRun], megabytes(freed), count(len(removed), "bundle"))
			}); perr != nil {
				return perr
			}
			return err
		},
	}
}

type storedJSON struct {
	Infohash string    `json:"infohash"`
	Name     string    `json:"name,omitempty"`
	Key      string    `json:"public_key,omitempty"`
	Channel  string    `json:"channel,omitempty"`
	Version  string    `json:"version,omitempty"`
	Status   string    `json:"status"`
	Roles    []string  `json:"roles"`
	Bytes    int64     `json:"bytes_on_disk"`
	Size     int64     `json:"size,omitempty"`
	LastUsed time.Time `json:"last_used"`
	Dir      string    `json:"dir"`
}

type pruneJSON struct {
	DryRun  bool         `json:"dry_run"`
	Removed []storedJSON `json:"removed"`
	Freed   int64        `json:"bytes_freed"`
}

func toStoredJSON(b relay.StoredBundle) storedJSON {
	j := storedJSON{
		Infohash: b.Infohash.String(), Name: b.Name, Channel: b.Channel, Version: b.Version.String(),
		Status: string(b.Status), Roles: b.Roles, Bytes: b.Bytes, Size: b.Size, LastUsed: b.LastUsed.UTC(), Dir: b.Dir,
	}
	if !b.Key.IsZero() {
		j.Key = b.Key.String()
	}
	if j.Roles == nil {
		j.Roles = []string{}
	}
	return j
}

func dataJSON(dir string, u *relay.DataUsage) any {
	out := struct {
		Dir         string       `json:"data_dir"`
		Bytes       int64        `json:"bytes_on_disk"`
		Reclaimable int64        `json:"reclaimable"`
		Bundles     []storedJSON `json:"bundles"`
	}{Dir: dir, Bytes: u.Bytes, Reclaimable: u.Reclaimable, Bundles: []storedJSON{}}
	for _, b := range u.Bundles {
		out.Bundles = append(out.Bundles, toStoredJSON(b))
	}
	return out
}

func printData(w io.Writer, dir string, u *relay.DataUsage) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY/CHANNEL\tVERSION\tSTATUS\tROLES\tON DISK\tLAST USED")
	for _, b := range u.Bundles {
		who, version := b.Infohash.String(), b.Name
		if !b.Key.IsZero() {
			who, version = b.Key.String()+"/"+b.Channel, b.Version.String()
		}
		if version == "" {
			version = "-"
		}
		roles := strings.Join(b.Roles, ",")
		if roles == "" {
			roles = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", who, version, b.Status, roles, megabytes(b.Bytes), b.LastUsed.UTC().Format(time.RFC3339))
	}
	tw.Flush()
	fmt.Fprintf(w, "%s in %s; %s reclaimable (relay prune)\n", megabytes(u.Bytes), dir, megabytes(u.Reclaimable))
}

// bundleLabel names a stored bundle in a line: key/channel version, or
// its infohash while its manifest is not here.
func bundleLabel(b relay.StoredBundle) string {
	if b.Key.IsZero() {
		return b.Infohash.String() + " (partial)"
	}
	return b.Key.String() + "/" + b.Channel + " " + b.Version.String()
}

// megabytes formats a byte count for people, in decimal units.
func megabytes(n int64) string {
	switch {
	case n < 1e3:
		return fmt.Sprintf("%d B", n)
	case n < 1e6:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	case n < 1e9:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	}
	return fmt.Sprintf("%.2f GB", float64(n)/1e9)
}
