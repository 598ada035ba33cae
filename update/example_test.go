package update_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/update"
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
