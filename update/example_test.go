package update_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/update"
	"github.com/relay-sh/relay/update/updatetest"
)

// version is set at build time: go build -ldflags "-X main.version=1.2.3".
var version string

// A program that installs each new release of itself and restarts into
// it. examples/selfupdate is the whole program.
func Example() {
	if update.IsHealthCheck(os.Args[1:]) {
		fmt.Println(version) // the new version answers before it is kept
		return
	}
	v, err := update.BuildVersion(version)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	key, _ := signer.ParsePublicKey("yg4gxe7z1r7mr6orids9fh95y7gxhdsxjqi6nngsxxtakqaxr5no")
	u, err := update.New(update.Config{
		Key:         key,
		Version:     v,
		HealthCheck: &update.HealthCheck{},
		Confirm:     true, // roll back a new version that never says it works
		Logger:      slog.Default(),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := u.Started(); errors.Is(err, update.ErrRolledBack) {
		// This version started before and never confirmed: the previous
		// one is back in place.
		if err := u.Restart(); err != nil {
			os.Exit(1)
		}
		os.Exit(0) // only on Windows: the new process runs
	}
	go func() {
		rel, err := u.Run(context.Background(), update.Install)
		if errors.Is(err, update.ErrPermission) || errors.Is(err, update.ErrManaged) {
			// This user may not replace the executable, or a package
			// manager owns it: no retry mends that (see ErrPermission).
			slog.Warn("updates are off", "err", err)
			return
		}
		if err != nil {
			return
		}
		slog.Info("restarting into the new version", "version", rel.Version)
		if err := u.Restart(); err != nil {
			slog.Error("restart failed; the new version runs from the next start", "err", err)
			return
		}
		os.Exit(0) // only on Windows: the new process runs
	}()
	// ... the program's work; once it is known to work:
	u.Confirm()
}

// An updater's network settings: a proxy for its HTTP requests, a peer to
// ask for the release's files, and caps on what it downloads and serves.
// It runs against a release server of package updatetest, as a program's
// own test would: version 2.0.0 replaces an executable of 1.0.0.
func ExampleConfig_network() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir, _ := os.MkdirTemp("", "update-example-")
	defer os.RemoveAll(dir)
	srv, err := updatetest.Start(ctx, filepath.Join(dir, "server"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	if _, err := srv.PublishFiles(ctx, "2.0.0", map[string][]byte{updatetest.Name("app"): []byte("app 2.0.0")}); err != nil {
		fmt.Println(err)
		return
	}
	seeder, _ := srv.Peer()
	exe := filepath.Join(dir, "app")
	os.WriteFile(exe, []byte("app 1.0.0"), 0o755)

	u, err := update.New(srv.Config(update.Config{
		Version:    record.MustParseVersion("1.0.0"),
		Executable: exe,
		DataDir:    filepath.Join(dir, "data"),
		// Relays and web seeds are asked through the proxy that
		// HTTPS_PROXY names; a program with its own proxy setting
		// passes http.ProxyURL of it.
		HTTPTransport: &http.Transport{Proxy: http.ProxyFromEnvironment},
		Peers:         []netip.AddrPort{seeder},
		DownloadRate:  4 << 20,   // bytes a second
		UploadRate:    512 << 10, // what Run serves
		UTP:           false,     // TCP only (the default)
	}))
	if err != nil {
		fmt.Println(err)
		return
	}
	rel, err := u.Apply(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	b, _ := os.ReadFile(exe)
	fmt.Printf("installed %s: %s\n", rel.Version, b)
	// Output: installed 2.0.0: app 2.0.0
}
