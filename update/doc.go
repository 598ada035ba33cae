// Package update lets a Go program update itself from releases published
// with relay. The program gives it the provider's public key and its own
// version; update finds newer releases in the Mainline DHT, fetches the
// one file of the release that is the program for this platform, runs the
// whole verification chain of relay (signature, replay, rollback, expiry,
// manifest, file hashes), and replaces the running executable atomically.
// When to do that is the program's choice:
//
//	// Notify only: Check fetches the release's manifest alone.
//	rel, err := u.Check(ctx) // or u.Run(ctx, update.NotifyOnly)
//
//	// Install; the new version runs from the next start.
//	rel, err := u.Run(ctx, update.Install)
//
//	// Install and restart now.
//	if _, err := u.Run(ctx, update.Install); err == nil {
//		err = u.Restart() // on Unix, returns only on error
//		...
//		os.Exit(0) // on Windows, the new process is running: exit
//	}
//
// A program finds its own version with BuildVersion and answers the new
// version's health check (see HealthCheck) first thing in main.
//
// Replacing is safe: the new executable is written in the old one's
// folder, checked against the manifest's SHA-256 while it is written,
// synced, given the old file's mode and renamed over it (on Windows the
// running file is first renamed aside and removed at a later check). With
// a HealthCheck, the new executable must also start and answer before it
// is kept; otherwise the old one is put back. On any failure the old
// executable is left as it was and the error says which check failed.
// With Config.Confirm, the replaced executable is kept and a new version
// that never confirms it works (Confirm) is rolled back at its next start
// (Started).
//
// A process that may not write the executable's folder gets ErrPermission,
// and an executable a package manager installed is refused with
// ErrManaged, before anything is downloaded; Run returns either rather
// than retry.
//
// Config also sets the updater's network: an HTTP transport (a proxy)
// for relays and web seeds, peers to ask, rate caps and uTP. A program's
// own tests serve it releases from 127.0.0.1 with package updatetest,
// through the whole verification chain.
//
// The package never prints, never reads flags or environment variables
// and never exits the program; it logs to the *slog.Logger it is given
// (nil is silent). Two things are documented exceptions by purpose:
// Restart starts the program again with its own os.Args and environment,
// and the default data folder is under systemd's $CACHE_DIRECTORY or
// os.UserCacheDir. It never installs
// a file that did not pass every check, never leaves the executable
// half-written, and leaves no goroutine running once a call returns.
package update
