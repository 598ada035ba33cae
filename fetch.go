package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/relay-sh/relay/dht"
	"github.com/relay-sh/relay/httprelay"
	"github.com/relay-sh/relay/internal/faultpoint"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/transfer"
)

// errBadOptions marks options no retry can mend.
var errBadOptions = errors.New("bad options")

// FetchOptions says what Fetch follows and where it puts what it gets.
type FetchOptions struct {
	// Key is the trusted publisher key. Required.
	Key signer.PublicKey
	// Channel is the release channel; empty means "stable".
	Channel string
	// Out is the folder the release's files are placed in, each atomically
	// under its manifest path. Empty places nothing: the verified files
	// stay in the bundle (a seeder, or an Install hook, uses them there).
	// A file already in Out is replaced only if an earlier release of Key
	// placed it there (this data folder records what each placed) or it
	// already holds the release's content; otherwise nothing is placed and
	// Fetch returns ErrWouldOverwrite.
	Out string
	// Overwrite lets the release's files replace any file in Out.
	Overwrite bool
	// OS and Arch select the files of one platform; empty means this
	// program's (runtime.GOOS, runtime.GOARCH). AllPlatforms fetches every
	// file instead.
	OS, Arch     string
	AllPlatforms bool
	// AllowExpired installs a record past its expiry instead of refusing
	// it with record.ErrExpired.
	AllowExpired bool
	// Peers are peers to try besides those the DHT and web seeds give.
	Peers []netip.AddrPort
	// Progress receives the download's progress; nil drops it.
	Progress func(transfer.Progress)
	// OnStage is called as each stage of the fetch begins (Stage), with
	// the release once it is known; nil drops it. It runs on the fetch's
	// goroutine, like Progress: it must return quickly.
	OnStage func(Stage, record.Release)
	// StallTimeout ends a download that made no progress (no new data, no
	// next stage) for that long, with ErrStalled; zero means
	// DefaultStallTimeout. It bounds each wait, not the whole download: a
	// big bundle on a slow link goes on as long as data comes.
	StallTimeout time.Duration
	// Recheck, when positive, resolves the channel again at that interval
	// while a release downloads: a newer release that passes the record
	// checks ends that download, and Fetch fetches the newer one instead.
	// Watch sets it to its interval.
	Recheck time.Duration
	// OnWaiting is called once a download has made no progress for a
	// while (half of StallTimeout, at most 10 s), and again after each
	// such spell, with what it waits for; nil drops it.
	OnWaiting func(Waiting)
	// OnFound is called when a new release passed the record checks,
	// before its download starts; nil drops it.
	OnFound func(r record.Release, previous record.Version)
	// Current is the version installed by other means (a program's own
	// version): a release not above it is not fetched, and one below it is
	// refused as a rollback, as if it had been accepted here.
	Current record.Version
	// ManifestOnly stops once the release's manifest is fetched and
	// verified (step 5; for an encrypted release, its sealed manifest
	// opened with Identities): FetchResult.Manifest returns it, and
	// nothing else is fetched, placed, installed or saved. A few
	// kilobytes say what a release holds before its files are fetched.
	// Like CheckOnly it stops at an accepted release (UpToDate), unless
	// Again.
	ManifestOnly bool
	// Again places the current release's files in Out and calls Install
	// even when that release was accepted before (relay fetch); without
	// it an accepted release is left alone (relay watch).
	Again bool
	// CheckOnly stops after the record checks (steps 1 to 4): the result
	// says whether there is a new release (Release, UpToDate, Previous);
	// nothing is fetched, placed, installed or saved, and OnFound is not
	// called.
	CheckOnly bool
	// Move hands the fetched files over to Out by renaming them out of
	// the bundle in the data folder, not by copying them, for a caller
	// that does not serve the bundle once Fetch returns (relay fetch):
	// the bundle stops being served first. Only files that arrived in
	// this fetch are moved, and only from a bundle this client does not
	// seed; a file the data folder held whole before (a seeder's), or
	// that cannot be moved (Out on another file system), is copied. The
	// ciphertexts of an encrypted release that arrived are removed once
	// their plaintexts are placed. What stays of the bundle is its
	// manifest and metainfo; fetching the release again downloads the
	// files again. Ignored without Out, and with Install (which reads the
	// files in the bundle).
	Move bool
	// Keep is how many releases of the channel stay in the data folder
	// once Fetch has accepted one: the newest, the accepted one always
	// among them. Zero means 1, or as many as a seeder or publisher
	// recorded for the channel in this data folder, if more. Older
	// bundles of the channel are removed (FetchResult.Pruned).
	Keep int
	// Identities read an encrypted release (ParseIdentities): its files
	// are decrypted as they are placed, and without an identity among its
	// recipients Fetch returns ErrNoIdentity. Unused for a release in the
	// clear.
	Identities []Identity
	// Sealed takes an encrypted release as it is, with no identity: its
	// ciphertexts are verified against the bundle's manifest and stay in
	// the bundle, as a seeder serves them. Files and Path are then the
	// ciphertexts'. Ignored for a release in the clear.
	Sealed bool
	// Pushed checks the key's records as the packets this client holds
	// have them, asking no DHT node nor relay: packets that peers of the
	// key's swarm told of (relay_record, docs/spec/relay-record.md) or that
	// an earlier check found. The checks are those of a DHT answer. A key
	// the check needs and no packet is held of fails with ErrNotHeld. Watch,
	// Seed and update.Run set it when a peer's packet wakes them.
	Pushed bool
	// Staged honours staged rollouts (docs/spec/rollout.md), as a
	// machine that updates itself should: a new release whose rollout
	// this machine (its data folder's RolloutSecret) is not yet in is not
	// fetched, and Fetch returns ErrHeldBack with the release in the
	// result; the release accepted before stays current. A critical
	// release, a release accepted before, and any release for a data
	// folder that accepted none (nor Current) are never held back.
	// Without Staged, Fetch takes the release at once, as a person who
	// asks for it (relay fetch) or a seeder does.
	Staged bool
	// Install, when set, is called with the verified release after its
	// files are placed in Out and before the new state is saved: an error
	// from it leaves the state unchanged, so the next Fetch tries again.
	Install func(ctx context.Context, res *FetchResult) error
}

// FetchResult is what a Fetch found and did.
type FetchResult struct {
	// Release is the current release record and Packet the signed packet
	// it came in.
	Release record.Release
	Packet  *record.SignedPacket
	// Root is the packet of the root that vouched for the release: the
	// followed key's, or its successor's (docs/spec/keys.md); Delegation
	// is its delegation, nil when it signs its own releases, and Signers
	// the release keys whose records made the release count.
	Root       *record.SignedPacket
	Delegation *record.Delegation
	Signers    []signer.PublicKey
	// Previous is the version accepted before this Fetch (zero for none).
	Previous record.Version
	// UpToDate is set when the current release is the one already
	// accepted: nothing was fetched.
	UpToDate bool
	// Resolve says what the DHT lookup found, Relays what the HTTP
	// relays answered (Config.Relays).
	Resolve dht.ResolveStats
	Relays  httprelay.GetStats
	// Bundle is the verified bundle, Files the files fetched from it, and
	// Placed their paths in Out.
	Bundle *transfer.Bundle
	Files  []record.File
	Placed []string
	// Pruned are the channel's older bundles removed from the data folder
	// after this release was accepted (FetchOptions.Keep).
	Pruned []*transfer.Bundle
	// Place is this machine's place, 0 to 99, in the staged rollout of
	// Release (record.RolloutPlace), set by a Staged fetch of a new
	// release in one; it took the release if Place < Release.Rollout.
	Place int
	// Sealed is the decrypted manifest of an encrypted release (whose
	// Bundle holds ciphertexts); nil for a release in the clear.
	Sealed *record.Sealed
	// plain is the folder that holds an encrypted release's files
	// decrypted: Out, or one in the data folder.
	plain string
	// manifest is the verified manifest of a ManifestOnly fetch, which
	// has no Bundle.
	manifest *record.Manifest
}

// vouchers returns the keys besides the followed one that a delegated
// release's manifest may name: the root that vouched for it and its
// signers.
func (r *FetchResult) vouchers() []signer.PublicKey {
	if r.Root == nil {
		return nil
	}
	return append([]signer.PublicKey{r.Root.Key}, r.Signers...)
}

// Path returns where a fetched file is: in the verified bundle, or for
// an encrypted release where it was placed decrypted.
func (r *FetchResult) Path(f record.File) string {
	if r.Sealed != nil {
		return filepath.Join(r.plain, filepath.FromSlash(f.Path))
	}
	return (&transfer.Fetched{Bundle: r.Bundle}).Path(f)
}

// Dir returns the folder the files of Path are in.
func (r *FetchResult) Dir() string {
	if r.Sealed != nil {
		return r.plain
	}
	return r.Bundle.Dir
}

// Manifest returns the release's manifest: the bundle's, or for an
// encrypted release the sealed one, which lists the files as placed.
func (r *FetchResult) Manifest() *record.Manifest {
	switch {
	case r.Sealed != nil:
		return &r.Sealed.Manifest
	case r.Bundle == nil:
		return r.manifest
	}
	return r.Bundle.Manifest
}

// errManifestOnly ends a ManifestOnly fetch once it has the manifest.
var errManifestOnly = errors.New("manifest only")

// Fetch runs the whole verification chain of docs/spec/verification.md
// once:
//
//  1. it gets the key's packet from many DHT nodes, keeping the highest
//     valid seq;
//  2. checks its signature with the trusted key;
//  3. refuses a seq lower than the last accepted one (record.ErrReplay)
//     or far in the future (record.ErrFutureSeq);
//  4. reads the channel's record and refuses a version lower than the
//     last accepted one (record.ErrRollback) or an expired record
//     (record.ErrExpired, unless AllowExpired);
//  5. fetches the manifest, whose SHA-256, key, channel, version and size
//     must match the record (record.ErrManifestMismatch);
//  6. fetches the files, each checked against the manifest
//     (record.ErrFileMismatch);
//  7. places them in Out atomically, calls Install, and only then saves
//     the new state.
//
// A failure at any step leaves Out and the saved state as they were and
// says which check failed. A release already accepted is not fetched again
// (UpToDate).
//
// A download never waits forever: one that makes no progress for
// StallTimeout ends with ErrStalled, and with Recheck a newer release
// found while one downloads takes its place (Fetch then fetches that one).
func (c *Client) Fetch(ctx context.Context, o FetchOptions) (*FetchResult, error) {
	for {
		res, err := c.fetchOnce(ctx, o)
		if !errors.Is(err, errSuperseded) {
			return res, err
		}
		o.Pushed = false // the network found the newer release
		c.log.Info("fetching the newer release", "reason", err)
	}
}

// fetchOnce is Fetch for the release the channel has now.
func (c *Client) fetchOnce(ctx context.Context, o FetchOptions) (*FetchResult, error) {
	channel, err := checkedChannel(o.Channel)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errBadOptions, err)
	}
	if o.Key.IsZero() {
		return nil, fmt.Errorf("%w: no key to follow", errBadOptions)
	}
	st, err := c.states.Load(o.Key, channel)
	if err != nil {
		return nil, err
	}
	stage := newStages(o.OnStage)
	stage.enter(StageResolving)
	floor := st.Accepted
	if o.Current.Compare(floor.Version) > 0 {
		floor.Version, floor.Manifest = o.Current, record.Digest{}
	}
	policy := record.Policy{
		Now:          c.now(),
		MaxFuture:    c.cfg.MaxFuture,
		AllowExpired: o.AllowExpired,
	}
	chk, err := c.checkRelease(ctx, o.Key, channel, floor, policy, true, o.Pushed)
	if chk == nil || chk.Root == nil {
		return nil, err
	}
	res := &FetchResult{Packet: chk.Packet, Root: chk.Root, Delegation: chk.Delegation, Signers: chk.Signers,
		Previous: floor.Version, Resolve: chk.Stats, Relays: chk.Relays, Release: chk.Release}
	if revoked := revokedSigners(st, chk.Delegation); len(revoked) > 0 && (record.IsVerification(err) || errors.Is(err, record.ErrNoRelease)) {
		// Nothing newer replaces a release a revoked key signed: that
		// matters more than why.
		return res, fmt.Errorf("%w: %s was signed by %s, revoked by root %s (and the channel has nothing newer: %v)",
			ErrRevokedInstall, st.Version, revoked[0], chk.Root.Key, err)
	}
	if err != nil {
		return res, err
	}
	// The packets checked: kept, and told to the key's swarm.
	for _, p := range chk.packets {
		c.learnt(p)
	}
	r := res.Release
	stage.rel = r
	if r.Version.Compare(floor.Version) == 0 {
		if !floor.Manifest.IsZero() && r.Manifest != floor.Manifest {
			return res, fmt.Errorf("%w: version %s was accepted with manifest %s, this record names %s: a release's content never changes under one version",
				record.ErrRollback, r.Version, st.Manifest, r.Manifest)
		}
		res.UpToDate = true
		if !o.CheckOnly && !slices.Equal(st.Signers, res.Signers) && r.Version.Compare(st.Version) == 0 {
			// The same release, now vouched for by other keys (a revoked
			// key's record replaced by a new key's): remember who, so
			// that a later revocation is judged by them.
			st.Accepted, st.Signers, st.Packet = record.Accept(res.Root, r), res.Signers, res.Root
			st.Infohash, st.Updated = r.Infohash, c.now().UTC()
			if err := c.states.Save(st); err != nil {
				return res, err
			}
		}
		if !o.Again || o.CheckOnly {
			return res, nil
		}
	} else if err := c.holdBack(o.Key, r, floor.Version, res, o.Staged); err != nil {
		return res, err
	} else if o.CheckOnly {
		return res, nil
	} else if o.OnFound != nil && !o.ManifestOnly {
		o.OnFound(r, floor.Version)
	}

	tc, err := c.transfer()
	if err != nil {
		return res, err
	}
	goos, goarch := o.OS, o.Arch
	if o.AllPlatforms {
		goos, goarch = "", ""
	} else if goos == "" {
		goos, goarch = runtime.GOOS, runtime.GOARCH
	}
	onManifest := res.openSealed(o)
	if o.ManifestOnly {
		sealed := onManifest
		onManifest = func(m *record.Manifest) error {
			if err := sealed(m); err != nil {
				return err
			}
			res.manifest = m
			return errManifestOnly
		}
	}
	// An encrypted release is decrypted as it downloads.
	var ear *early
	var tee func(record.File) io.WriteCloser
	if !o.Sealed && len(o.Identities) > 0 {
		ear = &early{dir: earlyDir(c.cfg.DataDir, r.Infohash), sealed: func() *record.Sealed { return res.Sealed }, ids: o.Identities}
		defer ear.close()
		tee = ear.tee
	}
	f, err := c.guardedFetch(ctx, o, r, floor, policy, func(ctx context.Context, progress func(transfer.Progress)) (*transfer.Fetched, error) {
		return tc.Fetch(ctx, transfer.FetchRequest{
			Key:        o.Key,
			Also:       res.vouchers(),
			Release:    r,
			OS:         goos,
			Arch:       goarch,
			Peers:      o.Peers,
			Swarm:      o.Pushed,
			Progress:   stage.progress(progress),
			OnManifest: onManifest,
			Tee:        tee,
		})
	})
	if o.ManifestOnly && errors.Is(err, errManifestOnly) {
		return res, nil
	}
	if err != nil {
		return res, err
	}
	res.Bundle, res.Files = f.Bundle, f.Files
	pl := placement{hashed: f.Hashed}
	if f.Bundle.Manifest.Encrypted != nil && !o.Sealed {
		if pl, err = c.decrypted(res, f, o); err != nil {
			return res, err
		}
		pl.early = ear
	}
	faultpoint.Hit(faultpoint.InstallBefore)
	if o.Out == "" && res.Sealed != nil {
		stage.enter(StagePlacing)
		if _, err := placeFiles(res.plain, res.Files, res.plain, pl); err != nil {
			return res, fmt.Errorf("failed to decrypt files into %s: %w", res.plain, err)
		}
	}
	if o.Out != "" {
		// Files that arrived in this fetch are handed over and leave
		// the bundle: moved out of it, or for an encrypted release (whose
		// plaintexts were written apart) removed once placed.
		var drop map[string]bool
		if o.Move && o.Install == nil && len(f.Arrived) > 0 && tc.Unload(r.Infohash) {
			if res.Sealed == nil {
				pl.move = f.Arrived
			} else {
				drop = f.Arrived
			}
		}
		stage.enter(StagePlacing)
		res.Placed, err = c.place(o.Key, st.Infohash, f.Bundle.Dir, res.Files, o.Out, o.Overwrite, pl)
		if err != nil {
			return res, err
		}
		for p := range drop {
			os.Remove(filepath.Join(f.Bundle.Dir, filepath.FromSlash(p)))
		}
	}
	if o.Install != nil {
		stage.enter(StageInstalling)
		if err := o.Install(ctx, res); err != nil {
			return res, fmt.Errorf("install %s: %w", r.Version, err)
		}
	}
	if res.UpToDate {
		stage.enter(StageDone)
		return res, nil
	}
	faultpoint.Hit(faultpoint.InstallState)
	// The root's packet is what the state keeps: the release's own when
	// the followed key signs it, else the delegation (with a seq of the
	// root's, which is what a replay is checked against).
	st.Accepted = record.Accept(res.Root, r)
	st.Signers = res.Signers
	st.Infohash, st.Packet, st.Updated = r.Infohash, res.Root, c.now().UTC()
	if err := c.states.Save(st); err != nil {
		return res, err
	}
	faultpoint.Hit(faultpoint.InstallSaved)
	// Only now, with the release accepted and installed, are the older
	// ones of no use here. Failing to remove them fails nothing.
	if res.Pruned, err = c.pruneChannel(tc, o.Key, channel, o.Keep); err != nil {
		c.log.Warn("failed to remove old bundles", "channel", channel, "err", err)
	}
	stage.enter(StageDone)
	return res, nil
}
