package update_test

import (
	"context"
	"errors"
	"log/slog"

	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/update"
)

// A program that tells its user of new releases, and installs a critical
// one (a security fix) at once. A release in a staged rollout this
// machine is not yet in is no news: Run waits through it, and Check says
// so with ErrHeldBack.
func ExampleUpdater_Run_critical() {
	key, _ := signer.ParsePublicKey("yg4gxe7z1r7mr6orids9fh95y7gxhdsxjqi6nngsxxtakqaxr5no")
	v, err := update.BuildVersion(version)
	if err != nil {
		return
	}
	u, err := update.New(update.Config{Key: key, Version: v})
	if err != nil {
		return
	}
	ctx := context.Background()
	if _, err := u.Check(ctx); errors.Is(err, update.ErrHeldBack) {
		slog.Info("a new release is rolled out to other machines first", "err", err)
	}
	rel, err := u.Run(ctx, update.NotifyOnly)
	if err != nil {
		return
	}
	if !rel.Record.Critical {
		slog.Info("a new version is available", "version", rel.Version, "notes", rel.Notes)
		return
	}
	if _, err := u.Apply(ctx); err == nil {
		u.Restart()
	}
}
