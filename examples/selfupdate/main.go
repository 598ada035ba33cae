// Command selfupdate is a program that updates itself with relay's update
// package. It prints its version, process ID and arguments, then follows
// a provider key and, when a newer release is published, fetches it,
// verifies it, replaces its own executable and starts again as the new
// version with the same arguments.
//
//	go build -ldflags "-X main.version=1.0.0" -o selfupdate ./examples/selfupdate
//	./selfupdate -key <public key> -interval 1m hello world
//
// Its flags (each also an environment variable) come before its
// arguments:
//
//	-key KEY            provider public key (SELFUPDATE_KEY); without it, no updates
//	-channel NAME       release channel (SELFUPDATE_CHANNEL), default stable
//	-bootstrap ADDRS    DHT bootstrap nodes, host:port,... (SELFUPDATE_BOOTSTRAP), default the public DHT
//	-listen ADDR        local address while checking (SELFUPDATE_LISTEN)
//	-data-dir DIR       update cache (SELFUPDATE_DATA_DIR), default update.DefaultDataDir
//	                    (a service: $CACHE_DIRECTORY)
//	-interval D         time between checks (SELFUPDATE_INTERVAL), default 1h
//	-mode M             what to do with a newer release (SELFUPDATE_MODE):
//	                      restart     install it and start again as it (the default)
//	                      next-start  install it; it runs from the next start
//	                      notify      say it is there and exit
//	                      check       check once, say what is there and exit
//	-health-check       start the new version before keeping it (SELFUPDATE_HEALTH_CHECK=1)
//	-confirm            keep the previous version until the new one confirms it works, and
//	                    roll back one started twice unconfirmed (SELFUPDATE_CONFIRM=1)
//	-v                  log debug messages
//
// With SELFUPDATE_UNHEALTHY=1 in its environment, which the new version
// inherits, the new version fails its health check, to show an update
// being refused and rolled back. With SELFUPDATE_BROKEN=<version>, that
// version passes its health check but exits with status 3 when it runs,
// before it confirms: with -confirm, its next start rolls it back.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/transfer"
	"github.com/relay-sh/relay/update"
)

// version is set at build time with -ldflags "-X main.version=1.2.3";
// without it, update.BuildVersion reads the module version the go command
// recorded (go install ...@v1.2.3).
var version string

func main() {
	// The health check comes first: the updater starts a new version with
	// this one argument before it keeps it. A real program would check
	// here what it needs to run (its configuration, its data).
	if update.IsHealthCheck(os.Args[1:]) {
		if os.Getenv("SELFUPDATE_UNHEALTHY") == "1" {
			fmt.Fprintln(os.Stderr, "selfupdate: unhealthy: SELFUPDATE_UNHEALTHY is set")
			os.Exit(1)
		}
		v, err := update.BuildVersion(version)
		if err != nil {
			fmt.Fprintf(os.Stderr, "selfupdate: unhealthy: %v\n", err)
			os.Exit(1)
		}
		fmt.Println(v)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(os.Stderr, "selfupdate: error: %v\n", err)
		if errors.Is(err, update.ErrPermission) {
			fmt.Fprintln(os.Stderr, "selfupdate: hint: run it as the owner of its folder, or let that user update it")
		}
		if errors.Is(err, update.ErrManaged) {
			fmt.Fprintln(os.Stderr, "selfupdate: hint: update it with the package manager that installed it")
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, argv []string) error {
	fs := flag.NewFlagSet("selfupdate", flag.ContinueOnError)
	keyText := fs.String("key", os.Getenv("SELFUPDATE_KEY"), "provider public key")
	channel := fs.String("channel", os.Getenv("SELFUPDATE_CHANNEL"), "release channel")
	bootstrap := fs.String("bootstrap", os.Getenv("SELFUPDATE_BOOTSTRAP"), "DHT bootstrap nodes, host:port,...")
	listen := fs.String("listen", os.Getenv("SELFUPDATE_LISTEN"), "local address while checking")
	dataDir := fs.String("data-dir", os.Getenv("SELFUPDATE_DATA_DIR"), "update cache folder")
	interval := fs.Duration("interval", envDuration("SELFUPDATE_INTERVAL", time.Hour), "time between checks")
	mode := fs.String("mode", envOr("SELFUPDATE_MODE", "restart"), "restart, next-start, notify or check")
	health := fs.Bool("health-check", os.Getenv("SELFUPDATE_HEALTH_CHECK") == "1", "start the new version before keeping it")
	confirm := fs.Bool("confirm", os.Getenv("SELFUPDATE_CONFIRM") == "1", "roll back a new version that never confirms it works")
	verbose := fs.Bool("v", false, "log debug messages")
	if err := fs.Parse(argv); err != nil {
		return err
	}

	v, err := update.BuildVersion(version)
	if err != nil {
		return err
	}
	fmt.Printf("selfupdate %s pid=%d\n", v, os.Getpid())
	fmt.Printf("args: %q\n", fs.Args())
	if *keyText == "" {
		return nil
	}
	key, err := signer.ParsePublicKey(*keyText)
	if err != nil {
		return err
	}

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg := update.Config{
		Key:      key,
		Channel:  *channel,
		Version:  v,
		Listen:   *listen,
		DataDir:  *dataDir,
		Interval: *interval,
		Confirm:  *confirm,
		Logger:   log,
		Progress: func(p transfer.Progress) {
			log.Debug("downloading", "stage", p.Stage, "done", p.Done, "total", p.Total, "peers", p.Peers)
		},
	}
	if *bootstrap != "" {
		cfg.Bootstrap = strings.Split(*bootstrap, ",")
	}
	if *health {
		cfg.HealthCheck = &update.HealthCheck{}
	}
	u, err := update.New(cfg)
	if err != nil {
		return err
	}
	// A new version that started before and never confirmed is rolled
	// back here: the previous one is in place again, and runs after a
	// restart.
	if err := u.Started(); errors.Is(err, update.ErrRolledBack) {
		fmt.Printf("rolled back: %v\n", err)
		return u.Restart()
	} else if err != nil {
		return err
	}
	if os.Getenv("SELFUPDATE_BROKEN") == v.String() {
		fmt.Fprintf(os.Stderr, "selfupdate: broken: %s exits before it confirms it works\n", v)
		os.Exit(3)
	}
	// A real program would confirm once it knows it works: after its
	// first requests, or a while.
	if err := u.Confirm(); err != nil {
		return err
	}

	switch *mode {
	case "check":
		rel, err := u.Check(ctx)
		if err != nil {
			return err
		}
		if rel == nil {
			fmt.Println("up to date")
		} else {
			fmt.Printf("version %s is available\n", rel.Version)
		}
		return nil
	case "notify":
		rel, err := u.Run(ctx, update.NotifyOnly)
		if err != nil {
			return err
		}
		fmt.Printf("version %s is available\n", rel.Version)
		return nil
	case "next-start":
		rel, err := u.Run(ctx, update.Install)
		if err != nil {
			return err
		}
		fmt.Printf("updated to %s; it runs from the next start\n", rel.Version)
		<-ctx.Done()
		return ctx.Err()
	case "restart":
		rel, err := u.Run(ctx, update.Install)
		if err != nil {
			return err
		}
		fmt.Printf("updated to %s; restarting\n", rel.Version)
		if err := u.Restart(); err != nil {
			return err
		}
		// Only on Windows does Restart return: the new process runs beside
		// this one, which must now exit.
		os.Exit(0)
	}
	return fmt.Errorf("unknown mode %q", *mode)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return d
	}
	return def
}
