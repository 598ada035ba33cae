package update

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/httprelay"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/transfer"
)

// DefaultInterval is the time between Run's checks when Config.Interval is
// zero.
const DefaultInterval = time.Hour

// Sentinel errors, for callers to branch on with errors.Is. Failed
// verification checks wrap record's sentinels instead (record.ErrRollback,
// record.ErrFileMismatch, ...; record.IsVerification tells them apart from
// network failures).
var (
	// ErrNoExecutable: the release has no file that is this program for
	// this platform, or more than one could be.
	ErrNoExecutable = errors.New("no executable for this platform")
	// ErrHealthCheck: the new executable failed its health check; the old
	// one was put back.
	ErrHealthCheck = errors.New("new executable failed its health check")
	// ErrNoVersion: BuildVersion found no version for the program.
	ErrNoVersion = errors.New("program has no version")
	// ErrHeldBack: the new release is in a staged rollout this machine
	// is not yet in (docs/spec/rollout.md); the program keeps its
	// version. Check and Apply return it with the release; Run takes it
	// as nothing to do yet and checks again at the interval. It is
	// relay.ErrHeldBack.
	ErrHeldBack = relay.ErrHeldBack
)

// Config configures an Updater. Key and Version are required; every other
// zero value is a documented default.
type Config struct {
	// Key is the provider's public key, the only thing trusted.
	Key signer.PublicKey
	// Channel is the release channel followed; empty means "stable".
	Channel string
	// Version is the running program's version (see BuildVersion). A
	// release is installed only when it is above it; one below it is
	// refused as a rollback.
	Version record.Version

	// Executable is the file replaced; empty means the running program's
	// (os.Executable, with symbolic links resolved).
	Executable string
	// File is the path, in the release, of the file that is this program;
	// empty means the release's one file built for this platform
	// (runtime.GOOS and runtime.GOARCH, named like app_linux_amd64 or set
	// when publishing), or its only file if it has one in all. A release
	// in which that is not one file is refused with ErrNoExecutable.
	File string

	// Bootstrap lists host:port DHT nodes to join through; nil means the
	// public Mainline routers.
	Bootstrap []string
	// Listen is the local address of the DHT node (UDP) and of the torrent
	// client (TCP); empty means every interface, a random port. They
	// listen while Run runs (see NoServe), and while a check or an
	// update runs.
	Listen string
	// DataDir holds what was fetched and what was accepted (the last
	// accepted release, against replays and rollbacks). Empty means
	// DefaultDataDir of the executable's name (for a system service:
	// systemd's $CACHE_DIRECTORY). It is a cache: if it is
	// lost, Version still stops any rollback below the running program.
	DataDir string

	// Interval is the time between Run's checks; zero means
	// DefaultInterval. Each wait is jittered, drawn uniformly from half to
	// one and a half times it; while Run serves and a peer that takes
	// relay_record messages is connected in the release's swarm, checks
	// are put off up to relay.PushBackoff times further (with many such
	// peers, up to relay.MaxPushBackoff).
	Interval time.Duration
	// HealthCheck, when set, makes Apply start the new executable before
	// keeping it; see HealthCheck.
	HealthCheck *HealthCheck
	// Confirm, when set, makes each install provisional until the new
	// version says it works: Apply keeps the executable it replaces at
	// PreviousPath (until the next install) and records the release as
	// awaiting confirmation beside the executable
	// (<executable>.relay-confirm); the new version calls Started when it
	// starts and Confirm once it knows it works. Started rolls back a
	// version that starts a second time unconfirmed, and that release is
	// not installed again (ErrRolledBack).
	Confirm bool

	// Logger receives what the updater does and why it refused a release;
	// nil is silent.
	Logger *slog.Logger
	// Progress receives the download's progress; nil drops it.
	Progress func(transfer.Progress)
	// StallTimeout gives up a download that made no progress for that long
	// (Run tries again later, or takes a newer release); zero means
	// relay.DefaultStallTimeout.
	StallTimeout time.Duration

	// Relays are pkarr HTTP relays' base URLs (https://host[/path]): the
	// record is read from the DHT and from them at once, the highest
	// valid seq winning, and goes through the same checks. Where UDP is
	// blocked they are the only way to it; the bundle then comes from its
	// web seeds. Nil means the DHT alone.
	Relays []string

	// HTTPTransport makes every HTTP request the updater makes: to the
	// Relays and to a release's web seeds. Nil means
	// http.DefaultTransport's behaviour, which takes its proxy from
	// HTTPS_PROXY, HTTP_PROXY and NO_PROXY (http.ProxyFromEnvironment).
	// A program with a proxy setting of its own passes an
	// *http.Transport whose Proxy is http.ProxyURL of it.
	HTTPTransport http.RoundTripper
	// Peers are BitTorrent peers asked for a release's files besides
	// those the DHT and web seeds give (like relay's FetchOptions.Peers):
	// a seeder on the local network, or one the program knows of. They
	// are trusted no more than any peer: what they send is checked
	// against the signed record.
	Peers []netip.AddrPort
	// DownloadRate caps the download of releases, in bytes per second;
	// zero or negative means no cap. UploadRate caps what Run serves.
	DownloadRate int64
	// UTP makes the updater dial and accept BitTorrent over uTP (BEP 29)
	// besides TCP, for peers behind NATs that pass UDP only. Off by
	// default: TCP is faster and steadier; peers that dial uTP are
	// accepted on the DHT's socket either way (relay.Config.UTP).
	UTP bool

	// AllowManaged lets the updater replace an executable that a package
	// manager installed (see ErrManaged), which is refused otherwise.
	AllowManaged bool

	// Identities read the provider's releases when they are encrypted
	// (relay.ReadIdentityFile parses an age identity file or an SSH
	// private key): each file is decrypted as it is installed. Nil reads
	// only releases in the clear; an encrypted one is then refused with
	// relay.ErrNoIdentity, and so is one encrypted to none of them.
	Identities []relay.Identity

	// NoServe keeps the installed release to this machine. By default Run
	// serves the release the data folder holds (the one installed) to the
	// program's other users while it runs, as a DHT node and a BitTorrent
	// peer announced in the DHT, within UploadRate: new releases then
	// spread from user to user, not only from the provider's seeders.
	// With NoServe, Run listens only while it checks.
	NoServe bool
	// UploadRate caps what Run serves, in bytes per second; zero means
	// relay.DefaultServeRate, negative no cap.
	UploadRate int64
}

// DefaultDataDir returns the data folder used when Config.DataDir is
// empty: relay-update/<name> under the cache folder systemd gives a
// service ($CACHE_DIRECTORY, set by CacheDirectory= in its unit; the first
// if it names several), or else under the user's cache folder
// (os.UserCacheDir: $XDG_CACHE_HOME or ~/.cache on Linux,
// ~/Library/Caches on macOS, %LocalAppData% on Windows). A service with
// neither (no HOME, no CacheDirectory=) must set Config.DataDir.
func DefaultDataDir(name string) (string, error) {
	if dirs := os.Getenv("CACHE_DIRECTORY"); dirs != "" {
		first, _, _ := strings.Cut(dirs, ":")
		if filepath.IsAbs(first) {
			return filepath.Join(first, "relay-update", name), nil
		}
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no data folder: %w; set Config.DataDir, or CacheDirectory= in a systemd unit", err)
	}
	return filepath.Join(cache, "relay-update", name), nil
}

// Release is a release found for the program: one newer than the running
// version or, returned with an error, the one refused.
type Release struct {
	// Version is the release's version, Record.Version.
	Version record.Version
	// Record is the signed release record: version, bundle infohash,
	// manifest digest, size and expiry.
	Record record.Release
	// Manifest is the verified manifest (for an encrypted release the
	// sealed one, relay.FetchResult.Manifest: its files, notes and
	// time of publication).
	Manifest *record.Manifest
	// Notes are the manifest's release notes.
	Notes string
	// File is the release's file installed as the executable.
	File record.File
	// Size is the number of bytes Apply fetches for this platform: File
	// and the release's files built for no platform in particular
	// (record.Manifest.Select).
	Size int64
}

// Updater checks for, installs and restarts into new releases of the
// running program. It is safe for concurrent use; its checks and updates
// run one at a time.
type Updater struct {
	cfg Config
	exe string
	log *slog.Logger

	mu sync.Mutex
	// serving is the client Run checks and updates through while it
	// runs, and serves through unless NoServe; Check and Apply use it
	// then (it holds the data folder, and the packets a check verified).
	serving *relay.Client
	// installed is the version this Updater installed, which the
	// executable holds now, though the program runs cfg.Version until it
	// restarts.
	installed record.Version
}

// New returns an Updater for cfg. It checks the configuration and finds
// the executable; it touches neither files nor the network.
func New(cfg Config) (*Updater, error) {
	if cfg.Key.IsZero() {
		return nil, errors.New("no provider key")
	}
	if cfg.Version.IsZero() {
		return nil, fmt.Errorf("%w: Config.Version is required", ErrNoVersion)
	}
	if cfg.Channel == "" {
		cfg.Channel = transfer.DefaultChannel
	}
	if err := record.ValidChannel(cfg.Channel); err != nil {
		return nil, err
	}
	if _, err := httprelay.ParseURLs(strings.Join(cfg.Relays, ",")); err != nil {
		return nil, err
	}
	u := &Updater{cfg: cfg, log: cfg.Logger}
	if u.log == nil {
		u.log = slog.New(slog.DiscardHandler)
	}
	exe := cfg.Executable
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("cannot find the running executable: %w", err)
		}
	}
	exe, err := filepath.Abs(exe)
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot find the executable: %w", err)
	}
	u.exe = exe
	if u.cfg.DataDir == "" {
		name := strings.TrimSuffix(filepath.Base(exe), ".exe")
		if u.cfg.DataDir, err = DefaultDataDir(name); err != nil {
			return nil, err
		}
	}
	if hc := u.cfg.HealthCheck; hc != nil {
		c := *hc
		u.cfg.HealthCheck = &c
	}
	return u, nil
}

// Executable returns the path of the file the updater replaces.
func (u *Updater) Executable() string { return u.exe }

// Check looks for a release newer than the running program that this
// platform can install, and returns it, or nil when there is none. It runs
// the record checks of the verification chain (signature, replay,
// fast-forward, rollback, expiry) and fetches the release's manifest
// alone, a few kilobytes, checked against the record: the Release it
// returns has the manifest, its notes, the file that would be installed
// and the size of what Apply would download. It fetches no other file and
// changes nothing. A refused release is returned with an error wrapping
// the reason (record's sentinels, ErrNoExecutable for a release with no
// file for this platform, ErrRolledBack) and naming its version.
//
// A release in a staged rollout this machine is not yet in is returned
// with ErrHeldBack (docs/spec/rollout.md); a critical one
// (Release.Record.Critical) never is, and a program that only tells its
// user of releases should Apply it, and Restart, at once.
//
// A release this Updater installed already counts as running.
func (u *Updater) Check(ctx context.Context) (*Release, error) {
	return u.check(ctx, false)
}

// check is Check; with pushed it reads the key's records from the packets
// the client holds, as relay.FetchOptions.Pushed does (Run, woken by a
// peer's packet).
func (u *Updater) check(ctx context.Context, pushed bool) (*Release, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.cleanup()
	c, done, err := u.client(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	o := u.fetchOptions()
	o.ManifestOnly, o.Pushed = true, pushed
	// Up to date for the data folder, which accepted this release, is not
	// up to date for an executable that was put back to an older version
	// since: that one needs the release again.
	if st, err := c.State(u.cfg.Key, u.cfg.Channel); err == nil && st.Version.Compare(o.Current) > 0 {
		o.Again = true
	}
	res, err := c.Fetch(ctx, o)
	u.noteResolve(res)
	var rel *Release
	if res != nil && !res.Release.Version.IsZero() {
		rel = &Release{Version: res.Release.Version, Record: res.Release}
	}
	if err != nil {
		return rel, named(res, err)
	}
	if res.UpToDate && res.Release.Version.Compare(o.Current) <= 0 {
		u.log.Debug("up to date", "version", o.Current, "channel", u.cfg.Channel)
		return nil, nil
	}
	if err := u.rolledBack(res.Release); err != nil {
		return rel, err
	}
	m := res.Manifest()
	if err := rel.describe(m, m.Select(runtime.GOOS, runtime.GOARCH), u.cfg.File); err != nil {
		return rel, err
	}
	return rel, nil
}

// describe fills in what manifest m says of the release for this
// platform: m, its notes, the file installed as the executable (named
// name, see Config.File) among files, the files this platform fetches,
// and their size.
func (rel *Release) describe(m *record.Manifest, files []record.File, name string) error {
	rel.Manifest, rel.Notes = m, m.Notes
	f, err := executable(m, files, name, runtime.GOOS, runtime.GOARCH)
	if err != nil {
		return err
	}
	rel.File = f
	for _, f := range files {
		rel.Size += f.Size
	}
	return nil
}

// Apply fetches the newest release if it is above the running program's
// version, verifies the whole chain, and replaces the executable with the
// release's file for this platform (see Config.File), running the health
// check if one is configured. It returns the release installed, or nil
// when there is none newer. On error the executable is as it was, and the
// release is returned too when one was found, to say which was refused.
//
// The running program is not changed: the new version runs from the next
// start, or at once after Restart.
//
// Apply first checks that it could replace the executable
// (CheckPermissions), before it looks for a release: if not, it fails at
// once with ErrPermission, having downloaded nothing.
func (u *Updater) Apply(ctx context.Context) (*Release, error) {
	return u.apply(ctx, false)
}

// apply is Apply; with pushed it reads the key's records from the
// packets the client holds, as check does: Run's after a check through
// the same client, which holds the packets that check verified, installs
// that record without a second lookup. Where the client holds none, the
// record is looked up.
func (u *Updater) apply(ctx context.Context, pushed bool) (*Release, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.cleanup()
	if err := u.CheckPermissions(); err != nil {
		return nil, err
	}
	c, done, err := u.client(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	o := u.fetchOptions()
	o.Pushed = pushed
	// A release the data folder accepted but the executable does not hold
	// (an older version was put back since) is installed again.
	if st, err := c.State(u.cfg.Key, u.cfg.Channel); err == nil && st.Version.Compare(o.Current) > 0 {
		o.Again = true
	}
	o.OnFound = func(r record.Release, previous record.Version) {
		u.log.Info("found a new release", "version", r.Version, "running", o.Current)
	}
	rel := &Release{}
	installed := false
	o.Install = func(ctx context.Context, res *relay.FetchResult) error {
		if err := rel.describe(res.Manifest(), res.Files, u.cfg.File); err != nil {
			return err
		}
		if err := u.rolledBack(res.Release); err != nil {
			return err
		}
		if err := u.install(ctx, res.Dir(), rel.File, res.Release); err != nil {
			return err
		}
		installed = true
		return nil
	}
	res, err := c.Fetch(ctx, o)
	if o.Pushed && errors.Is(err, relay.ErrNotHeld) {
		o.Pushed = false
		res, err = c.Fetch(ctx, o)
	}
	u.noteResolve(res)
	if res != nil {
		rel.Version, rel.Record = res.Release.Version, res.Release
	}
	if err != nil {
		if rel.Version.IsZero() {
			rel = nil
		}
		return rel, named(res, err)
	}
	if !installed {
		u.log.Debug("up to date", "version", o.Current, "channel", u.cfg.Channel)
		return nil, nil
	}
	u.installed = rel.Version
	u.log.Info("installed a new release", "version", rel.Version, "executable", u.exe, "file", rel.File.Path)
	// The data folder is a cache: Fetch kept the installed release's
	// bundle alone (FetchOptions.Keep; a health check's rollback uses the
	// old executable).
	for _, b := range res.Pruned {
		u.log.Debug("removed an old bundle", "version", b.Manifest.Version, "infohash", b.Infohash)
	}
	return rel, nil
}

// Restart starts the program again from its executable, which Apply may
// have replaced, with the same arguments (os.Args) and environment
// (os.Environ). On Unix it replaces the running process (execve: same
// process ID, same open standard streams) and returns only on error. On
// Windows, which has no such call, it starts the new process with the same
// standard streams and returns nil: the caller must then exit, promptly,
// so that the old executable's file can be removed.
//
// A Windows service must not call Restart: the service manager follows
// the process it started, sees it exit and takes the service as stopped,
// and the new process runs outside its control. A service installs with
// Apply (or Run(Install)) and then exits with a failure status, so that
// the recovery action of its service (sc failure <name> reset= 0
// actions= restart/1000) starts the new version; or it lets the new
// version run from the next start. Under systemd or launchd Restart is
// fine: the process ID stays the same.
func (u *Updater) Restart() error {
	if err := restart(u.exe); err != nil {
		return fmt.Errorf("failed to restart %s: %w", u.exe, err)
	}
	return nil
}

// client returns the client a check or an update runs through: Run's
// while it serves, else one of its own, closed by done. u.mu is held.
func (u *Updater) client(ctx context.Context) (c *relay.Client, done func(), err error) {
	if u.serving != nil {
		return u.serving, func() {}, nil
	}
	c, err = u.open(ctx, true)
	if err != nil {
		return nil, nil, err
	}
	return c, func() { c.Close() }, nil
}

// open opens an updater's client: with a read-only DHT node for a check,
// a full one for a Run that serves.
func (u *Updater) open(ctx context.Context, readOnly bool) (*relay.Client, error) {
	rate := u.cfg.UploadRate
	switch {
	case rate == 0:
		rate = relay.DefaultServeRate
	case rate < 0:
		rate = 0
	}
	c, err := relay.Open(ctx, relay.Config{
		DataDir:       u.cfg.DataDir,
		Bootstrap:     u.cfg.Bootstrap,
		Listen:        u.cfg.Listen,
		Relays:        u.cfg.Relays,
		HTTPTransport: u.cfg.HTTPTransport,
		ReadOnly:      readOnly,
		UploadRate:    rate,
		DownloadRate:  max(0, u.cfg.DownloadRate),
		UTP:           u.cfg.UTP,
		Logger:        quiet(u.cfg.Logger),
	})
	return c, permissionError("cannot use the data folder "+u.cfg.DataDir, err)
}

// current returns the version the executable holds: the one this Updater
// installed, or else the running one.
func (u *Updater) current() record.Version {
	if u.installed.Compare(u.cfg.Version) > 0 {
		return u.installed
	}
	return u.cfg.Version
}

func (u *Updater) fetchOptions() relay.FetchOptions {
	current := u.current()
	return relay.FetchOptions{
		Key:      u.cfg.Key,
		Channel:  u.cfg.Channel,
		OS:       runtime.GOOS,
		Arch:     runtime.GOARCH,
		Current:  current,
		Peers:    u.cfg.Peers,
		Progress: u.cfg.Progress,
		// A newer release found while one downloads takes its place.
		Recheck:      cmp.Or(u.cfg.Interval, DefaultInterval),
		StallTimeout: u.cfg.StallTimeout,
		Identities:   u.cfg.Identities,
		Staged:       true,
		OnWaiting: func(w relay.Waiting) {
			u.log.Info("download makes no progress", "version", w.Release.Version, "waiting", w.String())
		},
	}
}

// noteResolve logs what the DHT lookup of a fetch ignored: answers that
// failed verification are forged or corrupt, and worth knowing about.
func (u *Updater) noteResolve(res *relay.FetchResult) {
	if res != nil && res.Resolve.Invalid > 0 {
		u.log.Warn("ignored DHT answers that failed verification (forged or corrupt packets)", "answers", res.Resolve.Invalid, "key", u.cfg.Key)
	}
}

// named returns err naming the release it is about, if any and if it does
// not already.
func named(res *relay.FetchResult, err error) error {
	if res == nil {
		return err
	}
	if v := res.Release.Version; !v.IsZero() && !strings.Contains(err.Error(), v.String()) {
		return fmt.Errorf("release %s: %w", v, err)
	}
	return err
}

// cleanup removes what an earlier update left beside the executable: on
// Windows the old executable moved aside, the temporary file of an
// interrupted write, and the backup of an interrupted health check.
func (u *Updater) cleanup() {
	relay.CleanupReplaced(u.exe)
	os.Remove(backupPath(u.exe))
}

// executable returns the file of the release that is the program: the
// file named by name if it is set, else relay.Executable's choice for
// goos and goarch (the one file built for the platform, or the release's
// only file). fetched are the files fetched for the platform; the choice
// must be one of them.
func executable(m *record.Manifest, fetched []record.File, name, goos, goarch string) (record.File, error) {
	var f record.File
	if name != "" {
		i := slices.IndexFunc(m.Files, func(f record.File) bool { return f.Path == name })
		if i < 0 {
			return record.File{}, fmt.Errorf("%w: release %s has no file %s", ErrNoExecutable, m.Version, name)
		}
		f = m.Files[i]
	} else {
		var err error
		if f, err = relay.Executable(m, goos, goarch); err != nil {
			return record.File{}, fmt.Errorf("%w: %w", ErrNoExecutable, err)
		}
	}
	if !slices.ContainsFunc(fetched, func(g record.File) bool { return g.Path == f.Path }) {
		return record.File{}, fmt.Errorf("%w: release %s has no file built for %s/%s (%s is for %s/%s)",
			ErrNoExecutable, m.Version, goos, goarch, f.Path, f.OS, f.Arch)
	}
	return f, nil
}
