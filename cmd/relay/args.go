package main

import (
	"slices"
	"strings"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"
)

// normalizeArgs lets flags come anywhere on the command line, as users
// type them (`relay fetch KEY --out DIR`, `relay fetch --json KEY`):
// urfave/cli stops reading flags at the first argument, so this moves
// every flag ahead of the arguments, global flags ahead of the command. A
// "--" ends the flags; what follows it stays an argument.
func normalizeArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	var globals, flags, positional []string
	var cmd *cli.Command
	rest := args[1:]
	for len(rest) > 0 {
		a := rest[0]
		rest = rest[1:]
		if a == "--" {
			positional = append(positional, rest...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			if cmd == nil {
				if cmd = app.Command(a); cmd == nil {
					// Unknown command: leave the line to urfave/cli.
					return args
				}
				continue
			}
			positional = append(positional, a)
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		var f cli.Flag
		into := &flags
		if g := findFlag(app.Flags, name); g != nil {
			f, into = g, &globals
		} else if cmd != nil {
			f = findFlag(cmd.Flags, name)
		}
		if cmd == nil && f == nil {
			into = &globals
		}
		*into = append(*into, a)
		if !hasValue && takesValue(f) && len(rest) > 0 {
			*into = append(*into, rest[0])
			rest = rest[1:]
		}
	}
	out := append([]string{args[0]}, globals...)
	if cmd == nil {
		return append(out, positional...)
	}
	out = append(append(out, cmd.Name), flags...)
	if slices.ContainsFunc(positional, func(s string) bool { return strings.HasPrefix(s, "-") }) {
		out = append(out, "--")
	}
	return append(out, positional...)
}

func findFlag(flags []cli.Flag, name string) cli.Flag {
	for _, f := range flags {
		if slices.Contains(f.Names(), name) {
			return f
		}
	}
	return nil
}

func takesValue(f cli.Flag) bool {
	v, ok := f.(cli.DocGenerationFlag)
	return ok && v.TakesValue()
}

// rateFlag reads a flag of bytes a second: 512KiB, 2MB, 1000000; 0 is
// no cap.
func rateFlag(c *cli.Context, name string) (int64, error) {
	n, err := humanize.ParseBytes(c.String(name))
	if err != nil || n > 1<<40 {
		return 0, usagef("--%s %q is not a rate in bytes a second like 512KiB, 2MB or 0 (no cap)", name, c.String(name))
	}
	return int64(n), nil
}
