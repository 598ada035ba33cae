package main

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/cpuguy83/go-md2man/v2/md2man"
	"github.com/urfave/cli/v2"
)

// The command reference, docs/cli.md, and the man page, docs/relay.1, are
// made from the command definitions of newApp by the test below:
//
//go:generate env RELAY_WRITE_REFERENCE=1 go test -count=1 -run ^TestCommandReference$ .

const (
	referencePath = "../../docs/cli.md"
	manPath       = "../../docs/relay.1"
)

// TestCommandReference fails when docs/cli.md or docs/relay.1 differ from
// what the command's own definitions make, so that neither can drift from
// the flags relay takes. With RELAY_WRITE_REFERENCE=1 (go generate
// ./cmd/relay, task docs) it writes them instead.
func TestCommandReference(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the reference shows Linux's defaults (the data folder's)")
	}
	if n := exitConstants(t); n != len(exitCodes) {
		t.Fatalf("errors.go declares %d exit codes, the reference tells %d: add the new one to exitCodes", n, len(exitCodes))
	}
	app := newApp(strings.NewReader(""), io.Discard, io.Discard)
	ref := commandReference(app, false)
	man := manPage(commandReference(app, true))
	if os.Getenv("RELAY_WRITE_REFERENCE") == "1" {
		for path, b := range map[string][]byte{referencePath: []byte(ref), manPath: man} {
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	for path, want := range map[string][]byte{referencePath: []byte(ref), manPath: man} {
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what the command's definitions make: run go generate ./cmd/relay (or task docs) and commit it", path)
		}
	}
}

// exitConstants counts the exit code constants errors.go declares
// (exitOK, exitError, ...), so that a new one cannot be left out of the
// reference.
func exitConstants(t *testing.T) int {
	f, err := parser.ParseFile(token.NewFileSet(), "errors.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range f.Decls {
		if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.CONST {
			for _, s := range g.Specs {
				for _, name := range s.(*ast.ValueSpec).Names {
					if strings.HasPrefix(name.Name, "exit") {
						n++
					}
				}
			}
		}
	}
	return n
}

// exitCodes are the exit codes exitCode returns, as the reference tells
// them.
var exitCodes = []struct {
	code    int
	meaning string
}{
	{exitOK, "success"},
	{exitError, "an error"},
	{exitUsage, "bad usage: an unknown command or flag, a missing or malformed argument or value"},
	{exitVerify, "a verification failed: signature, hash, replay, rollback, expiry, revocation"},
	{exitNotFound, "nothing is published under that key or channel"},
	{exitIdentity, "the release is encrypted and no `--identity` given reads it"},
	{exitRevoked, "the installed release was signed by a key the root's delegation now revokes, and nothing newer replaces it"},
}

// referenceEnvironment is what the flags' own help does not say about the
// environment.
const referenceEnvironment = `Every flag can be given by an environment variable, named with each flag
(a command line flag wins over the variable). Most are ` + "`RELAY_`" + ` and the
flag's name (` + "`--wait-for`" + ` is ` + "`RELAY_WAIT_FOR`" + `; a list is comma-separated);
the flags whose meaning depends on the command have the command in their
variable's name (` + "`RELAY_PUBLISH_TIMEOUT`" + `, ` + "`RELAY_FETCH_TIMEOUT`" + `).
` + "`RELAY_PASSPHRASE`" + ` gives a sealed key's passphrase, which is otherwise
asked for on the terminal. Flags may come before or after a command's
arguments. ` + "`relay COMMAND --help`" + ` shows what this page shows for one command;
` + "`relay --generate-bash-completion`" + ` helps a shell complete commands and flags.`

// commandReference writes the reference of app's commands as Markdown: with
// tables for GitHub, or with definition lists for md2man's man page.
func commandReference(app *cli.App, man bool) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	if man {
		p("%% %s 1\n\n# NAME\n\n%s - %s\n\n", strings.ToUpper(app.Name), app.Name, app.Usage)
		p("# SYNOPSIS\n\n**%s** [*global options*] *command* [*options*] [*arguments*...]\n\n", app.Name)
		p("# DESCRIPTION\n\n")
	} else {
		p("<!-- Made from cmd/relay's command definitions by go generate ./cmd/relay: do not edit. -->\n\n")
		p("# Command reference\n\n%s - %s\n\n", app.Name, app.Usage)
		p("```\n%s [global options] command [options] [arguments...]\n```\n\n", app.Name)
	}
	p("%s distributes software releases signed with an ed25519 key: a signed record in the\n", app.Name)
	p("BitTorrent Mainline DHT names each release, and the release travels as a torrent.\n")
	p("The README's walk-through shows the commands together.\n\n")

	heading := func(title string) {
		if man {
			p("# %s\n\n", strings.ToUpper(title))
		} else {
			p("## %s\n\n", title)
		}
	}
	heading("Commands")
	if !man {
		p("| command | does |\n| --- | --- |\n")
	}
	for _, c := range app.VisibleCommands() {
		switch {
		case c.Name == "help":
		case man:
			p("%s\n: %s\n\n", c.Name, c.Usage)
		default:
			p("| [%s %s](#%s-%s) | %s |\n", app.Name, c.Name, app.Name, c.Name, tableText(c.Usage))
		}
	}
	if !man {
		p("\n")
	}
	heading("Global options")
	writeFlags(&b, app.Flags, man)
	p("These go before or after the command: `relay --json fetch KEY` and `relay fetch KEY --json` are the same.\n")
	p("One relay process writes to a data folder at a time: a second `fetch`, `watch`, `seed` or `publish` on a folder in use stops\n")
	p("with an error that names the process holding it; `resolve` may share it.\n\n")
	heading("Command details")
	for _, c := range app.VisibleCommands() {
		if c.Name == "help" {
			continue
		}
		if man {
			p("## %s %s\n\n", app.Name, c.Name)
			p("**%s %s**%s\n\n", app.Name, c.Name, manArgs(c))
		} else {
			p("### %s %s\n\n", app.Name, c.Name)
			p("```\n%s %s%s%s\n```\n\n", app.Name, c.Name, optionsHint(c), prefixed(" ", c.ArgsUsage))
		}
		p("%s.\n\n", upperFirst(c.Usage))
		if c.Description != "" {
			p("%s\n\n", strings.TrimSpace(c.Description))
		}
		writeFlags(&b, c.VisibleFlags(), man)
	}
	heading("Environment")
	p("%s\n\n", referenceEnvironment)
	heading("Exit status")
	if !man {
		p("| code | meaning |\n| --- | --- |\n")
	}
	for _, e := range exitCodes {
		if man {
			p("%d\n: %s\n\n", e.code, upperFirst(e.meaning))
		} else {
			p("| %d | %s |\n", e.code, e.meaning)
		}
	}
	if !man {
		p("\n")
	}
	p("Errors are one line on stderr, `relay: error: ...`, followed by `relay: hint: ...`\n")
	p("where one helps; stdout carries only results.\n")
	if man {
		p("\n# SEE ALSO\n\nThe documents in the docs folder of relay's repository: docs/spec for the formats.\n")
	}
	return b.String()
}

// manPage renders the man page's Markdown as roff, set ragged right and
// without hyphenation (a flag or a variable broken across lines cannot be
// copied).
func manPage(md string) []byte {
	roff := md2man.Render([]byte(md))
	th := bytes.Index(roff, []byte("\n.TH "))
	if th < 0 {
		return roff
	}
	end := th + 1 + bytes.IndexByte(roff[th+1:], '\n') + 1
	return slices.Concat(roff[:end], []byte(".nh\n.ad l\n"), roff[end:])
}

// writeFlags lists flags, leaving out --help (every command has it).
func writeFlags(b *strings.Builder, flags []cli.Flag, man bool) {
	var rows []cli.DocGenerationFlag
	for _, f := range flags {
		d, ok := f.(cli.DocGenerationFlag)
		if ok && f.Names()[0] != "help" {
			rows = append(rows, d)
		}
	}
	if len(rows) == 0 {
		return
	}
	if !man {
		b.WriteString("| option | environment | default | |\n| --- | --- | --- | --- |\n")
	}
	for _, f := range rows {
		placeholder, usage := unquoteUsage(f.GetUsage())
		var names []string
		for _, n := range f.(cli.Flag).Names() {
			dash := "--"
			if len(n) == 1 {
				dash = "-"
			}
			names = append(names, dash+n+prefixed(" ", placeholder))
		}
		def := flagDefault(f)
		if man {
			fmt.Fprintf(b, "%s\n: %s", strings.Join(names, ", "), usage)
			if def != "" {
				fmt.Fprintf(b, " (default: %s)", def)
			}
			if env := f.GetEnvVars(); len(env) > 0 {
				fmt.Fprintf(b, "; environment: %s", strings.Join(env, ", "))
			}
			b.WriteString(".\n\n")
			continue
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s |\n", cell(strings.Join(names, ", ")), cell(strings.Join(f.GetEnvVars(), ", ")), cell(def), tableText(usage))
	}
	b.WriteString("\n")
}

// unquoteUsage returns a flag usage's placeholder, the word it puts in
// backquotes, and the usage without them, as urfave/cli's help does.
func unquoteUsage(usage string) (placeholder, text string) {
	start := strings.IndexByte(usage, '`')
	if start < 0 {
		return "", usage
	}
	end := strings.IndexByte(usage[start+1:], '`')
	if end < 0 {
		return "", usage
	}
	placeholder = usage[start+1 : start+1+end]
	return placeholder, usage[:start] + placeholder + usage[start+2+end:]
}

// flagDefault is the default a flag's help shows: its DefaultText, or its
// value when it takes one. A boolean's false is no default worth a word.
func flagDefault(f cli.DocGenerationFlag) string {
	if !f.TakesValue() {
		return ""
	}
	d := f.GetDefaultText()
	if d == "" {
		d = f.GetValue()
	}
	return strings.Trim(d, `"`)
}

// cell is a table cell holding code.
func cell(s string) string {
	if s == "" {
		return ""
	}
	return "`" + strings.ReplaceAll(s, "|", `\|`) + "`"
}

// tableText is prose in a table cell.
func tableText(s string) string {
	return strings.ReplaceAll(s, "|", `\|`)
}

func optionsHint(c *cli.Command) string {
	if len(c.VisibleFlags()) > 1 {
		return " [options]"
	}
	return ""
}

// manArgs is a command's synopsis after its name, for the man page.
func manArgs(c *cli.Command) string {
	s := optionsHint(c)
	if s != "" {
		s = " [*options*]"
	}
	if c.ArgsUsage != "" {
		s += " *" + strings.ReplaceAll(c.ArgsUsage, " ", "* *") + "*"
	}
	return s
}

func prefixed(prefix, s string) string {
	if s == "" {
		return ""
	}
	return prefix + s
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
