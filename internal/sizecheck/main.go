// Command sizecheck measures what embedding relay's update package costs
// a Go program, and what relay's own binary weighs (task size). It builds,
// each as a user would ship it (CGO_ENABLED=0, -trimpath, -ldflags
// '-s -w'): a hello-world, the same hello-world embedding update (embed),
// embed with the torrent library's build tag noboltdb, the least a fetch
// path without the torrent library's client would link (floor), and
// cmd/relay (also unstripped, as go install makes it, and with noboltdb,
// as task build does). It prints their sizes, the growth
// over hello-world, and with -modules the modules that make up embed and
// relay, largest first.
//
// It exits 1 when embed grows hello-world by more than budgetMB megabytes
// (10^6 bytes), or -budget MB.
package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
)

// budgetMB bounds what embedding update adds to a hello-world, stripped
// (20.6 MB with anacrolix/torrent v1.61.0 and go1.26): raising it is a
// decision, not a drift.
const budgetMB = 21.5

func main() {
	budget := flag.Float64("budget", budgetMB, "exit 1 when update grows hello-world by more than this many MB (0: no limit)")
	modules := flag.Int("modules", 0, "list this many of the largest modules in embed and in relay")
	flag.Parse()
	if err := run(context.Background(), *budget, *modules); err != nil {
		fmt.Fprintln(os.Stderr, "sizecheck:", err)
		os.Exit(1)
	}
}

// target is one program measured.
type target struct {
	name string
	pkg  string
	tags string
	// keepPaths builds without -trimpath, which reuses what plain builds
	// compiled (TestUpdateGrowth: CI builds relay so before its tests).
	keepPaths bool
	// symbols keeps the symbol table and DWARF (no -ldflags '-s -w'), as
	// a plain go build or go install does.
	symbols bool
	// listed: -modules lists this program's modules.
	listed bool
}

var targets = []target{
	{name: "hello-world", pkg: "./internal/sizecheck/hello"},
	{name: "hello-world + update", pkg: "./internal/sizecheck/embed", listed: true},
	{name: "hello-world + update, -tags noboltdb", pkg: "./internal/sizecheck/embed", tags: "noboltdb"},
	{name: "floor: DHT, HTTP relay, age, peerwire", pkg: "./internal/sizecheck/floor"},
	{name: "relay, not stripped (go install)", pkg: "./cmd/relay", symbols: true},
	{name: "relay (cmd/relay)", pkg: "./cmd/relay", listed: true},
	{name: "relay, -tags noboltdb (task build)", pkg: "./cmd/relay", tags: "noboltdb"},
}

func run(ctx context.Context, budget float64, modules int) error {
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "sizecheck")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	fmt.Printf("CGO_ENABLED=0 go build -trimpath -ldflags '-s -w', %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	sizes := make([]int64, len(targets))
	for i, t := range targets {
		if sizes[i], err = builtSize(ctx, root, t, filepath.Join(tmp, fmt.Sprint(i))); err != nil {
			return err
		}
		growth := ""
		if i > 0 && t.pkg != "./cmd/relay" {
			growth = fmt.Sprintf("  (+%s)", mb(sizes[i]-sizes[0]))
		}
		fmt.Printf("  %-38s %9s%s\n", t.name, mb(sizes[i]), growth)
	}
	for _, t := range targets {
		if modules <= 0 || !t.listed {
			continue
		}
		fmt.Printf("\n%s, by module (bytes of code and read-only data symbols, unstripped):\n", t.name)
		if err := byModule(ctx, root, t, filepath.Join(tmp, "full"), modules); err != nil {
			return err
		}
	}
	if growth := sizes[1] - sizes[0]; budget > 0 && float64(growth) > budget*1e6 {
		return fmt.Errorf("update grows hello-world by %s, over the budget of %.1f MB", mb(growth), budget)
	}
	return nil
}

func mb(n int64) string { return fmt.Sprintf("%.2f MB", float64(n)/1e6) }

func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "github.com/relay-sh/relay").Output()
	if err != nil {
		return "", fmt.Errorf("go list -m: %w (run from relay's module)", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// builtSize is the size of t built into out.
func builtSize(ctx context.Context, root string, t target, out string) (int64, error) {
	if err := build(ctx, root, t, out); err != nil {
		return 0, err
	}
	fi, err := os.Stat(out)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// build builds t into out.
func build(ctx context.Context, root string, t target, out string) error {
	args := []string{"build", "-o", out}
	if !t.keepPaths {
		args = append(args, "-trimpath")
	}
	if !t.symbols {
		args = append(args, "-ldflags", "-s -w")
	}
	if t.tags != "" {
		args = append(args, "-tags", t.tags)
	}
	return gocmd(ctx, root, nil, nil, append(args, t.pkg)...)
}

// gocmd runs the go command in root with CGO_ENABLED=0 unless env says
// otherwise, its output into stdout if that is not nil.
func gocmd(ctx context.Context, root string, env []string, stdout *bytes.Buffer, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0"), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if stdout != nil {
		cmd.Stdout = stdout
	}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return nil
}

// byModule prints the n modules with the most symbol bytes in t.
func byModule(ctx context.Context, root string, t target, out string, n int) error {
	t.symbols = true
	if err := build(ctx, root, t, out); err != nil {
		return err
	}
	var list bytes.Buffer
	if err := gocmd(ctx, root, nil, &list, "list", "-deps", "-f", "{{.ImportPath}} {{with .Module}}{{.Path}}{{else}}std{{end}}", t.pkg); err != nil {
		return err
	}
	module := map[string]string{}
	for line := range strings.Lines(list.String()) {
		pkg, mod, ok := strings.Cut(strings.TrimSpace(line), " ")
		if ok {
			module[pkg] = mod
		}
	}
	var nm bytes.Buffer
	if err := gocmd(ctx, root, nil, &nm, "tool", "nm", "-size", out); err != nil {
		return err
	}
	sizes, total, err := tally(nm.Bytes(), module)
	if err != nil {
		return err
	}
	type row struct {
		mod  string
		size int64
	}
	var rows []row
	for m, s := range sizes {
		rows = append(rows, row{m, s})
	}
	slices.SortFunc(rows, func(a, b row) int { return cmp.Or(cmp.Compare(b.size, a.size), strings.Compare(a.mod, b.mod)) })
	for _, r := range rows[:min(n, len(rows))] {
		fmt.Printf("  %9s  %4.1f%%  %s\n", mb(r.size), 100*float64(r.size)/float64(total), r.mod)
	}
	fmt.Printf("  %9s  in all\n", mb(total))
	return nil
}

// tally adds up the sizes of go tool nm's code and read-only data symbols
// by the module of their package; the module path stands for groups that
// split into many (github.com/pion/... is WebRTC, go.opentelemetry.io/...
// is OpenTelemetry).
func tally(nm []byte, module map[string]string) (map[string]int64, int64, error) {
	sizes := map[string]int64{}
	var total int64
	for line := range strings.Lines(string(nm)) {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		switch f[2] {
		case "T", "t", "R", "r":
		default:
			continue // data and bss: mostly zeroed tables, not in the file
		}
		var size int64
		if _, err := fmt.Sscan(f[1], &size); err != nil {
			return nil, 0, errors.New("unexpected go tool nm output: " + line)
		}
		mod, ok := module[symbolPackage(strings.Join(f[3:], " "))]
		if !ok {
			mod = "runtime tables (go:, type:, itabs)"
		} else if g := group(mod); g != "" {
			mod = g
		}
		sizes[mod] += size
		total += size
	}
	return sizes, total, nil
}

// group names the module families that come as many modules.
func group(mod string) string {
	switch {
	case strings.HasPrefix(mod, "github.com/pion/"):
		return "github.com/pion/... (WebRTC)"
	case strings.HasPrefix(mod, "go.opentelemetry.io/"):
		return "go.opentelemetry.io/... (OpenTelemetry)"
	case strings.HasPrefix(mod, "github.com/anacrolix/missinggo"):
		return "github.com/anacrolix/missinggo/..."
	}
	return ""
}

// symbolPackage is the import path of the package a symbol belongs to:
// github.com/pion/webrtc/v4.(*PeerConnection).Close is in
// github.com/pion/webrtc/v4, fmt.Println in fmt.
func symbolPackage(sym string) string {
	if i := strings.IndexAny(sym, "[("); i >= 0 {
		sym = sym[:i]
	}
	slash := strings.LastIndexByte(sym, '/')
	dot := strings.IndexByte(sym[slash+1:], '.')
	if dot < 0 {
		return sym
	}
	return sym[:slash+1+dot]
}
