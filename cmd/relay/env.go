package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	alog "github.com/anacrolix/log"
	"github.com/urfave/cli/v2"

	"github.com/relay-sh/relay/httprelay"
	"github.com/relay-sh/relay/internal/untrusted"
	"github.com/relay-sh/relay/transfer"
)

// env is what every command shares: the streams and the global flags.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer

	bootstrap []string
	relays    []string
	listen    string
	reachable bool
	dataDir   string
	json      bool
	quiet     bool
	verbose   bool
	// engine is RELAY_ENGINE's BitTorrent engine (experimental: see
	// docs/development.md), not a flag.
	engine transfer.Engine

	// usageErr records an unknown command, which urfave/cli reports
	// through a callback rather than an error.
	usageErr error
}

func globalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{
			Name:    "bootstrap",
			Usage:   "DHT bootstrap nodes, `host:port,...` (default: the public Mainline routers)",
			EnvVars: []string{"RELAY_BOOTSTRAP"},
		},
		&cli.StringFlag{
			Name:    "relays",
			Usage:   "pkarr HTTP relays to read and store records through as well as the DHT, `URL,...` (where UDP is blocked, the only way)",
			EnvVars: []string{"RELAY_RELAYS"},
		},
		&cli.StringFlag{
			Name:    "listen",
			Usage:   "address to listen on for DHT (UDP) and BitTorrent (TCP), one port for both, `host:port` (default: every interface, a random port; loopback when every --bootstrap node is on loopback)",
			EnvVars: []string{"RELAY_LISTEN"},
		},
		&cli.BoolFlag{
			Name:    "reachable",
			Usage:   "this machine accepts connections at the address others see it at (a forwarded port, a cloud VM's one-to-one NAT): run a full DHT node there",
			EnvVars: []string{"RELAY_REACHABLE"},
		},
		&cli.StringFlag{
			Name:    "data-dir",
			Usage:   "where relay keeps bundles and state, `DIR` (default: " + defaultDataDirHelp() + ")",
			EnvVars: []string{"RELAY_DATA_DIR"},
		},
		&cli.BoolFlag{
			Name:    "json",
			Usage:   "machine-readable output on stdout",
			EnvVars: []string{"RELAY_JSON"},
		},
		&cli.BoolFlag{
			Name:    "quiet",
			Aliases: []string{"q"},
			Usage:   "print only results and errors",
			EnvVars: []string{"RELAY_QUIET"},
		},
		&cli.BoolFlag{
			Name:    "verbose",
			Aliases: []string{"v"},
			Usage:   "log what relay does, on stderr",
			EnvVars: []string{"RELAY_VERBOSE"},
		},
	}
}

func (e *env) load(c *cli.Context) error {
	e.listen = c.String("listen")
	e.reachable = c.Bool("reachable")
	e.json = c.Bool("json")
	e.quiet = c.Bool("quiet")
	e.verbose = c.Bool("verbose")
	if !e.verbose {
		// The DHT library prints some messages (a malformed packet from a
		// stranger) through its package-level logger, past the one relay
		// gives it: only -v shows them.
		alog.Default = alog.Default.WithFilterLevel(alog.Disabled)
	}
	for _, b := range strings.Split(c.String("bootstrap"), ",") {
		if b = strings.TrimSpace(b); b != "" {
			if err := checkHostPort(b); err != nil {
				return usageError{fmt.Errorf("--bootstrap %q: %w", b, err)}
			}
			e.bootstrap = append(e.bootstrap, b)
		}
	}
	relays, err := httprelay.ParseURLs(c.String("relays"))
	if err != nil {
		return usageError{fmt.Errorf("--relays: %w", err)}
	}
	e.relays = relays
	if cmd := c.App.Command(c.Args().First()); cmd != nil {
		e.warnOldVariables(cmd)
	}
	if e.engine, err = transfer.ParseEngine(os.Getenv("RELAY_ENGINE")); err != nil {
		return usageError{fmt.Errorf("RELAY_ENGINE: %w", err)}
	}
	e.dataDir = c.String("data-dir")
	if e.dataDir == "" {
		d, err := defaultDataDir()
		if err != nil {
			return fmt.Errorf("no data directory: %w (set --data-dir or RELAY_DATA_DIR)", err)
		}
		e.dataDir = d
	}
	return nil
}

// warnOldVariables says, for each flag of cmd whose variable names the
// command (perCommandFlags), that the variable without the command's name
// is set but not read.
func (e *env) warnOldVariables(cmd *cli.Command) {
	for _, f := range cmd.Flags {
		name := f.Names()[0]
		if old := "RELAY_" + strings.ToUpper(name); slices.Contains(perCommandFlags, name) && os.Getenv(old) != "" {
			e.note("warning: %s is not read; relay %s reads %s", old, cmd.Name, envName(cmd.Name, name))
		}
	}
}

// listenAddr is --listen or, when it is not given, the default at port:
// on loopback when every bootstrap node is on loopback (a network on this
// machine, which nothing outside it needs to reach), else every
// interface. Port "0" leaves the choice to the library: a random port.
func (e *env) listenAddr(port string) string {
	switch {
	case e.listen != "":
		return e.listen
	case len(e.bootstrap) > 0 && !slices.ContainsFunc(e.bootstrap, notLoopback):
		host, _, _ := net.SplitHostPort(e.bootstrap[0])
		if a, err := netip.ParseAddr(host); err == nil && a.Is6() {
			return net.JoinHostPort("::1", port)
		}
		return net.JoinHostPort("127.0.0.1", port)
	case port == "0":
		return ""
	}
	return ":" + port
}

// notLoopback reports whether the host of a host:port is anything but a
// loopback address or localhost.
func notLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return true
	}
	if host == "localhost" {
		return false
	}
	a, err := netip.ParseAddr(host)
	return err != nil || !a.IsLoopback()
}

// checkHostPort checks that addr is host:port with a port from 1 to
// 65535, as a bootstrap node's address must be.
func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("not host:port")
	}
	if p, err := strconv.Atoi(port); host == "" || err != nil || p < 1 || p > 65535 {
		return errors.New("not host:port with a port from 1 to 65535")
	}
	return nil
}

// logger returns the logger library packages are given: silent unless
// -v, then text on stderr.
func (e *env) logger() *slog.Logger {
	if !e.verbose {
		return nil
	}
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// result prints a command's result: v as one JSON object a line under
// --json, otherwise the text that text writes.
func (e *env) result(v any, text func(w io.Writer)) error {
	if e.json {
		return json.NewEncoder(e.stdout).Encode(v)
	}
	text(e.stdout)
	return nil
}

// note prints a line for people on stderr, unless -q or --json.
func (e *env) note(format string, args ...any) {
	if e.quiet || e.json {
		return
	}
	fmt.Fprintf(e.stderr, "relay: %s\n", untrusted.Escape(fmt.Sprintf(format, args...)))
}

// defaultDataDir is relay's folder under the user's data directory:
// $XDG_DATA_HOME/relay or ~/.local/share/relay on Unix, the Application
// Support folder on macOS, %LocalAppData% on Windows.
func defaultDataDir() (string, error) {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "relay"), nil
	}
	switch runtime.GOOS {
	case "windows", "darwin", "ios":
		d, err := os.UserConfigDir()
		if err != nil {
			return "", err
		}
		if runtime.GOOS == "windows" {
			if l := os.Getenv("LocalAppData"); l != "" {
				d = l
			}
		}
		return filepath.Join(d, "relay"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".local", "share", "relay"), nil
}

func defaultDataDirHelp() string {
	switch runtime.GOOS {
	case "windows":
		return `%LocalAppData%\relay`
	case "darwin":
		return "~/Library/Application Support/relay"
	}
	return "$XDG_DATA_HOME/relay or ~/.local/share/relay"
}

// defaultKeyFile is where relay init writes a key and publish reads one
// when --key is not given: relay's folder under the user's config
// directory ($XDG_CONFIG_HOME/relay/relay.key on Unix).
func defaultKeyFile() (string, error) {
	d, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no config directory: %w (give --key)", err)
	}
	return filepath.Join(d, "relay", "relay.key"), nil
}
