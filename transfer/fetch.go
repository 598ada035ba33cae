package transfer

import (
	"cmp"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/webseed"

	"github.com/relay-sh/relay/internal/diskio"
	"github.com/relay-sh/relay/internal/untrusted"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
)

// FetchRequest says which bundle to fetch, how to check it and where to
// look for it.
type FetchRequest struct {
	// Key is the publisher's key the release was verified with; the
	// manifest must name it, or one of Also.
	Key signer.PublicKey
	// Also are other keys that vouched for the release and that the
	// manifest may name: the roots and release keys of a delegation.
	Also []signer.PublicKey
	// Release is the verified release record: its infohash names the
	// torrent, its size bounds the download, its manifest digest checks
	// relay.json, and its web seeds (if any) serve the files.
	Release record.Release
	// OS and Arch select the files of one platform (record.Manifest.Select):
	// those built for it and those built for none. An empty OS fetches
	// every file.
	OS, Arch string
	// Peers are peers to try besides those of the DHT and web seeds.
	Peers []netip.AddrPort
	// Swarm says that a peer of Key's swarm told of the release
	// (relay_record): the fetch starts with the relay peers of Key this
	// client is connected to, who hold the release or soon will, beside
	// those the DHT names.
	Swarm bool
	// Progress, if not nil, is called from Fetch's goroutine every
	// ProgressInterval, when the stage changes, and once at the end.
	Progress func(Progress)
	// OnManifest, if not nil, is called with the verified manifest before
	// any file is fetched; an error from it ends the fetch (an encrypted
	// release no identity can read is not downloaded).
	OnManifest func(*record.Manifest) error
	// ProgressInterval is the time between Progress calls; zero means
	// a fifth of a second (a bar that moves during a fetch of a second or
	// two).
	ProgressInterval time.Duration
	// Tee, if not nil, is called for each wanted file whose bytes this
	// fetch reads as they come in (Fetched.Hashed lists them), once the
	// manifest is checked and before any file is asked for. The writer it returns (nil for none) gets the file's
	// bytes in order, each piece once it is verified, from the goroutine
	// that hashes them, and Close once the last was written or the fetch
	// of the file ended early. The file's SHA-256 is not yet compared with
	// the manifest's when it gets them: a failed check fails the fetch.
	// Its errors are its own: they change nothing in the fetch, and
	// Write must not hold the fetch up for long. An encrypted release is
	// decrypted this way while it downloads. A writer that is also a
	// Checker takes the place of the file's SHA-256.
	Tee func(record.File) io.WriteCloser
}

// Checker is a Tee writer that checks the bytes it is written by a digest
// of its own that the signed release covers: an encrypted release's
// ciphertext, which a recipient decrypts (age authenticates every chunk,
// its position and the last one) and whose plaintext it checks against
// the SHA-256 of the sealed manifest. A fetch does not compute the SHA-256
// of a file whose bytes it hands to a Checker: once they are written,
// Close waits for the check to end, and Checked reports whether it passed.
// Those bytes were checked piece by piece against the torrent's SHA-1
// hashes, which the infohash in the signed record names; with the
// Checker's own check they are the publisher's
// (docs/spec/verification.md). When Checked reports false, the fetch reads
// the file again and checks its SHA-256 against the manifest, as it does
// a file with no Checker.
type Checker interface {
	io.WriteCloser
	Checked() bool
}

// Stage is the step a fetch is at.
type Stage int

// The stages of a fetch, in order.
const (
	// StageInfo: looking for peers and the torrent's info.
	StageInfo Stage = iota
	// StageManifest: fetching and checking relay.json.
	StageManifest
	// StageFiles: fetching and checking the files.
	StageFiles
	// StageDone: every wanted file is here and verified.
	StageDone
)

func (s Stage) String() string {
	switch s {
	case StageInfo:
		return "info"
	case StageManifest:
		return "manifest"
	case StageFiles:
		return "files"
	case StageDone:
		return "done"
	}
	return fmt.Sprintf("stage(%d)", int(s))
}

// Progress is a fetch's progress.
type Progress struct {
	Infohash record.Infohash
	Stage    Stage
	// Done is how many bytes of the wanted files (and relay.json) are
	// here, of Total; Total is zero until the manifest is checked.
	Done, Total int64
	// Checked is how many bytes of those files (and relay.json) had their
	// SHA-256 checked against the manifest: Done runs ahead of it while the
	// last pieces are hashed.
	Checked int64
	// Rate is the rate bundle data arrives at, in bytes per second,
	// averaged over the last seconds.
	Rate float64
	// Peers is the number of peers connected now, Known the number of
	// peers known (connected, being dialled, or waiting to be).
	Peers, Known int
}

// Fetched is the result of a fetch: the bundle's folder and manifest, and
// the files fetched and verified.
type Fetched struct {
	// Bundle is the bundle; Bundle.Dir holds relay.json and the fetched
	// files under their manifest paths, with the manifest's modes (the
	// owner may always read them).
	Bundle *Bundle
	// Files are the files fetched and verified (all the manifest's files,
	// or those of the platform asked for).
	Files []record.File
	// Hashed holds the paths of the files whose SHA-256 this fetch
	// computed from the bytes it stored, as they came in. The other files
	// were checked by an earlier fetch into this data folder and are
	// trusted because their size and modification time are as that fetch
	// recorded them: a caller that hands them over should hash them as it
	// does.
	Hashed map[string]bool
	// Arrived holds the paths of the files that were not whole in the
	// data folder when the bundle was opened: their bytes came in through
	// this fetch (or an interrupted one it resumed), so no other role of
	// the data folder (a seeder, a publisher) has them yet.
	Arrived map[string]bool
}

// Path returns the path on disk of a fetched file.
func (f *Fetched) Path(file record.File) string {
	return filepath.Join(f.Bundle.Dir, filepath.FromSlash(file.Path))
}

// Fetch downloads the bundle a release record names, into the data folder,
// and verifies it, in order:
//
//  1. the torrent's info (from peers, or from a web seed's
//     <ws>/<name>.torrent) must hash to the record's infohash, describe a
//     bundle, and have the record's size: else record.ErrManifestMismatch;
//  2. relay.json is fetched alone and checked against the record
//     (record.Manifest.Match): else record.ErrManifestMismatch, and no
//     other file is requested;
//  3. the files wanted are fetched and each one's SHA-256 and size are
//     checked as it streams in: else record.ErrFileMismatch.
//
// An interrupted fetch resumes without downloading again what it verified.
// A failed check removes what the fetch downloaded. After a successful
// fetch the client keeps serving the bundle (what it holds of it) until
// Drop or Close. Handing the files over to their final place is the
// caller's job; they are not synced to disk.
func (c *Client) Fetch(ctx context.Context, req FetchRequest) (*Fetched, error) {
	r := req.Release
	switch {
	case req.Key.IsZero():
		return nil, errors.New("fetch: no publisher key")
	case r.Infohash.IsZero() || r.Manifest.IsZero() || r.Version.IsZero():
		return nil, errors.New("fetch: release record has no infohash, manifest digest or version")
	case r.Size <= 0:
		return nil, fmt.Errorf("fetch: release record has size %d", r.Size)
	}
	if err := record.ValidChannel(r.Channel); err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	if c.w != nil {
		return c.w.fetch(ctx, req)
	}
	ih := r.Infohash
	f := &fetch{c: c, req: req, ih: ih, dir: filepath.Join(c.root, ih.String()), start: time.Now()}
	if _, err := os.Stat(f.dir); errors.Is(err, fs.ErrNotExist) {
		f.created = true
	}
	exp := &expectation{size: r.Size, refused: make(chan error, 1)}
	c.mu.Lock()
	prev := c.expect[ih]
	c.expect[ih] = exp
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		if c.expect[ih] == exp {
			if prev != nil {
				c.expect[ih] = prev
			} else {
				delete(c.expect, ih)
			}
		}
		c.mu.Unlock()
	}()

	infoBytes := f.localInfo()
	a, err := c.add(ih, infoBytes)
	if err != nil {
		select {
		case rerr := <-exp.refused:
			err = rerr
		default:
		}
		f.cleanup(err)
		return nil, fmt.Errorf("fetch: %w", err)
	}
	f.a, f.exp = a, exp
	// One fetch of a bundle at a time.
	select {
	case a.fetchSem() <- struct{}{}:
	case <-ctx.Done():
		c.drop(ih, a)
		return nil, fmt.Errorf("fetch: %w", ctx.Err())
	}
	c.mu.Lock()
	a.fetches++
	a.key = req.Key
	a.fetchedAt = time.Now()
	if !a.seeding {
		a.quiet = false // announced and looked up as any fetch
	}
	c.mu.Unlock()
	if req.Swarm {
		c.addPeers(a.t, c.swarmAddrs(req.Key), torrent.PeerSourcePex)
	}
	select {
	case a.wake <- struct{}{}:
	default:
	}
	res, err := f.run(ctx)
	c.mu.Lock()
	a.fetches--
	c.mu.Unlock()
	<-a.fetchSem()
	if err != nil {
		c.drop(ih, a)
		if perr := c.store.save(ih, true); perr != nil {
			c.log.Debug("failed to save bundle state", "infohash", ih, "err", perr)
		}
		f.cleanup(err)
		return nil, fmt.Errorf("fetch: %w", err)
	}
	return res, nil
}

// Unload stops serving a bundle that the client holds only because it
// fetched it, so that the caller can move its files away, and reports
// whether the client now leaves the bundle alone. A bundle the client
// seeds (Seed), or that a fetch is still fetching, stays, and Unload
// reports false.
func (c *Client) Unload(ih record.Infohash) bool {
	if c.w != nil {
		return c.w.unload(ih)
	}
	c.mu.Lock()
	a := c.bundles[ih]
	c.mu.Unlock()
	if a != nil {
		c.drop(ih, a)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bundles[ih] == nil
}

// fetchSem returns the bundle's one-fetch-at-a-time semaphore.
func (a *active) fetchSem() chan struct{} {
	a.semOnce.Do(func() { a.sem = make(chan struct{}, 1) })
	return a.sem
}

type fetch struct {
	c       *Client
	req     FetchRequest
	ih      record.Infohash
	dir     string
	created bool // the bundle's folder did not exist before this fetch
	a       *active
	exp     *expectation
	start   time.Time

	// prioMu serialises the changes of piece priorities by streamFile
	// and shares; shared is set (with prioMu held) once shares apply,
	// and streamFile then leaves priorities alone.
	prioMu sync.Mutex
	shared atomic.Bool

	stage   Stage
	total   int64
	files   []*torrent.File // the wanted files, relay.json first
	checked atomic.Int64    // bytes of the wanted files whose SHA-256 was checked
	meter   rateMeter

	ws webSeedNotes
}

// localInfo returns the info bytes of the bundle's metainfo if the data
// folder has it.
func (f *fetch) localInfo() []byte {
	if f.created {
		return nil
	}
	_, b, err := loadMetainfo(f.dir, f.ih)
	if err != nil {
		return nil
	}
	return b
}

// cleanup removes what a fetch downloaded when a check failed.
func (f *fetch) cleanup(err error) {
	if f.created && record.IsVerification(err) {
		f.c.mu.Lock()
		_, inUse := f.c.bundles[f.ih]
		f.c.mu.Unlock()
		if !inUse {
			os.RemoveAll(f.dir)
		}
	}
}

func (f *fetch) run(ctx context.Context) (*Fetched, error) {
	// A refusal of the torrent's info, or a failure to write its data
	// (a full disk), ends the fetch with that error as the cause.
	ctx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel(nil) // then wait for the goroutines it stops
		wg.Wait()
	}()
	wg.Go(func() {
		select {
		case err := <-f.exp.refused:
			cancel(err)
		case <-ctx.Done():
		}
	})
	res, err := f.fetch(ctx, &wg)
	if err != nil && ctx.Err() != nil {
		err = context.Cause(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w (%s)", err, f.sources())
		}
	}
	return res, err
}

// sources says what the fetch got from where, for an error that ends it
// before it completed.
func (f *fetch) sources() string {
	st := f.a.t.Stats()
	return f.ws.describe(fmt.Sprintf("got %d bytes; %d peers known, %d connected", st.BytesReadUsefulData.Int64(), st.TotalPeers, st.ActivePeers))
}

// webSeedFailed notes why web seed u gave nothing.
func (f *fetch) webSeedFailed(u string, err error) { f.ws.note(u, err) }

// webSeedNotes holds why each web seed of a fetch gave nothing.
type webSeedNotes struct {
	mu     sync.Mutex
	failed map[string]error // by URL
}

// note notes why web seed u gave nothing.
func (n *webSeedNotes) note(u string, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.failed == nil {
		n.failed = make(map[string]error)
	}
	n.failed[u] = err
}

// describe returns got, followed by what each web seed did wrong.
func (n *webSeedNotes) describe(got string) string {
	parts := []string{got}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, u := range slices.Sorted(maps.Keys(n.failed)) {
		parts = append(parts, fmt.Sprintf("web seed %s: %v", untrusted.String(u), n.failed[u]))
	}
	return strings.Join(parts, "; ")
}

// keepPeers gives the torrent client the peers the request names again
// each second while the bundle holds no connection, until ctx ends. The
// client forgets a peer whose connection failed, and a seeder that still
// holds this client's previous connection to the bundle (a fetch that
// just ended) refuses a new one with the same peer ID: without this, a
// fetch right after another waited out its deadline with no peer.
func (f *fetch) keepPeers(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if f.a.t.Stats().ActivePeers == 0 {
			f.c.addPeers(f.a.t, f.req.Peers, torrent.PeerSourceDirect)
		}
	}
}

func (f *fetch) fetch(ctx context.Context, wg *sync.WaitGroup) (*Fetched, error) {
	t := f.a.t
	r := f.req.Release

	f.c.addPeers(t, f.req.Peers, torrent.PeerSourceDirect)
	if len(f.req.Peers) > 0 {
		wg.Go(func() { f.keepPeers(ctx) })
	}
	seeds := webSeeds(r.WebSeeds)

	// 1. The info.
	if t.Info() == nil && len(seeds) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.infoFromWebSeeds(ctx, seeds)
		}()
	}
	tick := time.NewTicker(cmp.Or(f.req.ProgressInterval, 200*time.Millisecond))
	defer tick.Stop()
	f.report(true)
	for t.Info() == nil {
		select {
		case <-t.GotInfo():
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.Closed():
			return nil, errBundleClosed
		case <-tick.C:
			f.report(false)
		}
	}
	info := t.Info()
	if info.TotalLength() != r.Size {
		return nil, fmt.Errorf("%w: torrent is %d bytes, the record says %d", record.ErrManifestMismatch, info.TotalLength(), r.Size)
	}
	if err := checkInfo(info); err != nil {
		return nil, err
	}
	if _, err := findMetainfo(f.dir); err != nil {
		mi := t.Metainfo()
		if err := writeMetainfo(f.dir, info.Name, mi.InfoBytes); err != nil {
			return nil, err
		}
	}
	for _, ws := range seeds {
		wg.Go(func() { f.addWebSeed(ctx, ws, info.Name) })
	}
	byPath := filesByPath(info)
	tfiles := t.Files()

	// 2. The manifest, alone.
	f.stage = StageManifest
	mfile := tfiles[byPath[record.ManifestName]]
	f.files = []*torrent.File{mfile}
	f.report(true)
	if mfile.Length() > record.MaxManifestSize {
		return nil, fmt.Errorf("%w: manifest of %d bytes", record.ErrManifestMismatch, mfile.Length())
	}
	mfile.SetPriority(torrent.PiecePriorityNormal)
	mpath := filepath.Join(f.dir, info.Name, record.ManifestName)
	var mb []byte
	err := f.streamFile(ctx, mpath, info, byPath[record.ManifestName], true, func(b []byte) {
		mb = append(mb, b...)
	})
	if err != nil {
		return nil, fmt.Errorf("failed to fetch manifest: %w", err)
	}
	m, err := matchManifest(f.req, info, byPath, mb)
	if err != nil {
		return nil, err
	}
	f.c.store.setChecked(f.ih, byPath[record.ManifestName])

	// 3. The files.
	f.stage = StageFiles
	want := m.Select(f.req.OS, f.req.Arch)
	_, checked, _, _ := f.c.store.view(f.ih)
	held := f.c.store.heldBefore(f.ih)
	type job struct {
		file record.File
		tf   *torrent.File
		j    int
		tee  io.WriteCloser
	}
	var jobs []job
	f.total = int64(len(mb))
	f.checked.Store(int64(len(mb)))
	for _, mf := range want {
		if mf.Size == 0 {
			if err := createEmpty(filepath.Join(f.dir, info.Name, filepath.FromSlash(mf.Path)), mf); err != nil {
				return nil, err
			}
			continue
		}
		j := byPath[mf.Path]
		f.files = append(f.files, tfiles[j])
		f.total += mf.Size
		if j < len(checked) && checked[j] {
			f.checked.Add(mf.Size)
			continue
		}
		jb := job{file: mf, tf: tfiles[j], j: j}
		if f.req.Tee != nil {
			jb.tee = f.req.Tee(mf)
		}
		if _, ok := jb.tee.(Checker); !ok {
			// Its SHA-256 is computed as it arrives (a file a Checker
			// checks has none).
			if pc := f.c.store.check(f.ih); pc != nil {
				if err := pc.hasher.Hash(j); err != nil {
					f.c.log.Debug("failed to read back what arrived of a file", "file", mf.Path, "err", err)
				}
			}
		}
		tfiles[j].SetPriority(torrent.PiecePriorityNormal)
		jobs = append(jobs, jb)
	}
	// Hash the files in torrent order, as they arrive.
	slices.SortFunc(jobs, func(a, b job) int { return a.j - b.j })
	f.report(true)
	var files []int
	for _, jb := range jobs {
		files = append(files, jb.j)
	}
	hashed, arrived := make(map[string]bool, len(want)), make(map[string]bool, len(want))
	for _, mf := range want {
		if mf.Size == 0 {
			hashed[mf.Path] = true // its digest is checked in createEmpty
		} else if j := byPath[mf.Path]; j >= len(held) || !held[j] {
			arrived[mf.Path] = true
		}
	}
	for _, jb := range jobs {
		hashed[jb.file.Path] = true
	}
	sh := newShares(f, info, files)
	shareCtx, stopShares := context.WithCancel(ctx)
	defer stopShares()
	wg.Go(func() { sh.run(shareCtx) })
	done := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		next := 0
		defer func() {
			// The fetch of the files after one that failed ended early.
			for _, jb := range jobs[next:] {
				if jb.tee != nil {
					jb.tee.Close()
				}
			}
		}()
		for k, jb := range jobs {
			next = k + 1
			p := filepath.Join(f.dir, info.Name, filepath.FromSlash(jb.file.Path))
			tee := jb.tee
			chk, _ := tee.(Checker)
			var h hash.Hash = sha256.New()
			var n int64
			var err error
			if tee == nil {
				// The file's SHA-256 was computed as its chunks were
				// written (internal/piecehash); once its pieces are
				// verified, it holds their bytes.
				if err = f.streamFile(ctx, p, info, jb.j, true, nil); err == nil {
					h, n, err = f.fileHash(p, jb.j)
				}
			} else {
				// A file the caller reads as it comes in (an encrypted
				// one, decrypted into another file) is never synced: its
				// write-back is left to the system.
				err = f.streamFile(ctx, p, info, jb.j, false, func(b []byte) {
					if chk == nil {
						h.Write(b)
					}
					tee.Write(b)
					n += int64(len(b))
					f.checked.Add(int64(len(b)))
				})
				tee.Close()
			}
			if err != nil {
				done <- fmt.Errorf("failed to fetch %s: %w", jb.file.Path, err)
				return
			}
			if chk != nil && !chk.Checked() {
				// What the Checker did not vouch for is checked as any
				// file is.
				chk = nil
				if n, err = hashFile(p, h); err != nil {
					done <- fmt.Errorf("failed to check %s: %w", jb.file.Path, err)
					return
				}
			}
			if chk == nil {
				if err := checkDigest(jb.file, h, n); err != nil {
					done <- err
					return
				}
			}
			f.c.store.setChecked(f.ih, jb.j)
		}
		done <- nil
	}()
	for waiting := true; waiting; {
		select {
		case err := <-done:
			if err != nil {
				return nil, err
			}
			waiting = false
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.Closed():
			return nil, errBundleClosed
		case <-tick.C:
			f.report(false)
		}
	}
	for _, mf := range want {
		p := filepath.Join(f.dir, info.Name, filepath.FromSlash(mf.Path))
		if err := os.Chmod(p, fs.FileMode(mf.Mode)&^0o022|0o400); err != nil {
			return nil, err
		}
	}
	if err := f.c.store.save(f.ih, true); err != nil {
		f.c.log.Warn("failed to save bundle state", "infohash", f.ih, "err", err)
	}
	f.stage = StageDone
	f.report(true)
	b := &Bundle{
		Infohash: f.ih, Name: info.Name, Dir: filepath.Join(f.dir, info.Name),
		Manifest: m, ManifestBytes: mb, ManifestDigest: r.Manifest,
		Size: r.Size, PieceLength: info.PieceLength,
	}
	return &Fetched{Bundle: b, Files: want, Hashed: hashed, Arrived: arrived}, nil
}

// rateMeter follows the rate of a fetch's bundle data for its progress
// reports.
type rateMeter struct {
	last  time.Time
	bytes int64
	rate  float64 // bytes per second, averaged over the last reports
}

// take takes the bytes received so far, and reports whether a report is
// due: now, or at least 50 ms after the last.
func (m *rateMeter) take(bytes int64, now bool) bool {
	at := time.Now()
	if !m.last.IsZero() {
		if dt := at.Sub(m.last).Seconds(); dt > 0.05 {
			inst := float64(bytes-m.bytes) / dt
			if m.rate == 0 {
				m.rate = inst
			} else {
				m.rate = 0.5*m.rate + 0.5*inst
			}
		} else if !now {
			return false
		}
	}
	m.last, m.bytes = at, bytes
	return true
}

// matchManifest checks the manifest bytes mb a fetch got against its
// request (the record's digest, the publisher's keys) and against the
// torrent's info, whose files' indexes byPath holds by path, and hands
// the manifest to OnManifest.
func matchManifest(req FetchRequest, info *metainfo.Info, byPath map[string]int, mb []byte) (*record.Manifest, error) {
	r := req.Release
	if got := record.SHA256(mb); got != r.Manifest {
		return nil, fmt.Errorf("%w: manifest sha-256 is %s, the record says %s", record.ErrManifestMismatch, got, r.Manifest)
	}
	m, err := record.DecodeManifest(mb)
	if err != nil {
		return nil, err
	}
	key := req.Key
	if slices.Contains(req.Also, m.Key) {
		key = m.Key
	}
	if err := m.Match(key, r, mb); err != nil {
		return nil, err
	}
	if req.OnManifest != nil {
		if err := req.OnManifest(m); err != nil {
			return nil, err
		}
	}
	nonEmpty := 0
	for _, mf := range m.Files {
		if mf.Size == 0 {
			continue
		}
		nonEmpty++
		j, ok := byPath[mf.Path]
		if !ok || info.Files[j].Length != mf.Size {
			return nil, fmt.Errorf("%w: torrent does not hold %s as the manifest lists it", record.ErrManifestMismatch, mf.Path)
		}
	}
	if nonEmpty+1 != len(info.Files) {
		return nil, fmt.Errorf("%w: torrent has %d files, the manifest %d and itself", record.ErrManifestMismatch, len(info.Files), nonEmpty)
	}
	return m, nil
}

// filesByPath returns the index of each of info's files by its
// slash-separated path.
func filesByPath(info *metainfo.Info) map[string]int {
	byPath := make(map[string]int, len(info.Files))
	for j, fi := range info.Files {
		byPath[strings.Join(fi.Path, "/")] = j
	}
	return byPath
}

// checkDigest checks that a file of n bytes whose SHA-256 is h is the
// manifest's file mf.
func checkDigest(mf record.File, h hash.Hash, n int64) error {
	var got record.Digest
	copy(got[:], h.Sum(nil))
	if n != mf.Size || got != mf.SHA256 {
		return fmt.Errorf("%w: %s has %d bytes and sha-256 %s, the manifest says %d and %s",
			record.ErrFileMismatch, mf.Path, n, got, mf.Size, mf.SHA256)
	}
	return nil
}

// report calls the progress callback, if any, every interval or now.
func (f *fetch) report(now bool) {
	if f.req.Progress == nil {
		return
	}
	t := f.a.t
	st := t.Stats()
	bytes := st.BytesReadUsefulData.Int64()
	if !f.meter.take(bytes, now) {
		return
	}
	p := Progress{Infohash: f.ih, Stage: f.stage, Total: f.total, Rate: f.meter.rate, Peers: st.ActivePeers, Known: st.TotalPeers}
	for _, tf := range f.files {
		p.Done += tf.BytesCompleted()
	}
	p.Checked = min(f.checked.Load(), f.total)
	if f.stage == StageDone {
		p.Done, p.Checked = f.total, f.total
	}
	f.req.Progress(p)
}

// fileHash returns the SHA-256 of file j of the bundle, at path p, once
// every piece of it is verified, and its size: the hash its chunks were
// hashed into as they were written, finished with what it lacks read
// back from disk (chunks that came before the hasher, or out of its
// reach).
func (f *fetch) fileHash(p string, j int) (hash.Hash, int64, error) {
	pc := f.c.store.check(f.ih)
	if pc == nil {
		return nil, 0, errBundleClosed
	}
	h, n := pc.hasher.File(j)
	r, err := os.Open(p)
	if err != nil {
		return nil, 0, err
	}
	defer r.Close()
	m, err := io.CopyBuffer(h, io.NewSectionReader(r, n, 1<<62), make([]byte, 1<<20))
	pc.fileRead.Add(m)
	if err != nil {
		return nil, 0, err
	}
	return h, n + m, nil
}

// hashFile writes the file at p to h and returns its size.
func hashFile(p string, h io.Writer) (int64, error) {
	r, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	return io.CopyBuffer(h, r, make([]byte, 1<<20))
}

// createEmpty creates an empty file the manifest lists (the torrent has
// no data for it).
func createEmpty(p string, mf record.File) error {
	if mf.SHA256 != sha256.Sum256(nil) {
		return fmt.Errorf("%w: %s is empty, but the manifest's sha-256 is %s", record.ErrFileMismatch, mf.Path, mf.SHA256)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// streamAhead is how far ahead of the hash pieces are asked for first.
const streamAhead = 32 << 20

// filePieces returns where file j of info starts in the torrent's data,
// and the pieces [first, end) that hold its data.
func filePieces(info *metainfo.Info, j int) (off int64, first, end int) {
	for _, fi := range info.Files[:j] {
		off += fi.Length
	}
	pl := info.PieceLength
	return off, int(off / pl), int((off + info.Files[j].Length + pl - 1) / pl)
}

// streamFile feeds fn the data of file j of the torrent, read from disk
// at path p piece by piece as each piece is verified, in order: the file
// is hashed while it streams in, without a second pass. With fn nil it
// reads nothing: it waits for the pieces in order and counts them
// checked, as the caller checks the file's hash (fileHash) at the end. It reads exactly
// the file's length as the info states it. With writeback, it asks for
// the write-back of each piece it has read to start (diskio.Writeback,
// which never makes it wait for the disk), so that the sync of the file
// when it is placed (relay fetch --out moves it) finds it written, instead
// of writing the whole file then.
func (f *fetch) streamFile(ctx context.Context, p string, info *metainfo.Info, j int, writeback bool, fn func([]byte)) error {
	off, first, end := filePieces(info, j)
	size := info.Files[j].Length
	if size == 0 {
		return nil
	}
	var file *os.File
	var wb *diskio.Writeback
	defer func() {
		if file != nil {
			file.Close()
			wb.Close()
		}
	}()
	var buf []byte
	if fn != nil {
		// A quarter MiB: the bytes are still in the CPU's cache when
		// fn's reader (a decryption) takes them.
		buf = make([]byte, min(size, 256<<10))
	}
	// Ask for the pieces just ahead first, so that they arrive about in
	// the order they are hashed and the hash ends soon after the last.
	// Only from one or two sources, though: in a swarm, peers asking for
	// pieces in the same order would have nothing to trade, and the
	// random order the torrent client uses spreads pieces faster.
	window := max(4, int(streamAhead/info.PieceLength))
	raised := first
	for pos := int64(0); pos < size; {
		piece := int((off + pos) / info.PieceLength)
		if raised < min(end, piece+window) && !f.shared.Load() && f.a.t.Stats().ActivePeers <= 2 {
			f.prioMu.Lock()
			for ; raised < min(end, piece+window) && !f.shared.Load(); raised++ {
				f.a.t.Piece(raised).SetPriority(torrent.PiecePriorityHigh)
			}
			f.prioMu.Unlock()
		}
		if err := f.c.store.waitPiece(ctx, f.ih, piece); err != nil {
			return err
		}
		if file == nil {
			var err error
			if file, err = os.Open(p); err != nil {
				return err
			}
			if writeback {
				wb = diskio.NewWriteback(p)
			}
		}
		end := min(size, int64(piece+1)*info.PieceLength-off)
		begin := pos
		if fn == nil {
			f.checked.Add(end - pos)
			pos = end
		}
		for pos < end {
			n, err := file.ReadAt(buf[:min(int64(len(buf)), end-pos)], pos)
			if n == 0 && err != nil {
				return err
			}
			fn(buf[:n])
			pos += int64(n)
		}
		wb.Hint(begin, pos-begin)
	}
	return nil
}

// webSeeds returns the web seed URLs of a record, each ending in '/' as
// BEP 19 wants for a multi-file torrent.
func webSeeds(ws []string) []string {
	var out []string
	for _, u := range ws {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			continue
		}
		if !strings.HasSuffix(u, "/") {
			u += "/"
		}
		out = append(out, u)
	}
	return out
}

// infoFromWebSeeds fetches the bundle's metainfo from the web seeds
// (webSeedInfo) until one serves the right info, the torrent gets it
// from peers, or ctx ends.
func (f *fetch) infoFromWebSeeds(ctx context.Context, seeds []string) {
	b := webSeedInfo(ctx, f.c.webClient(), seeds, f.req.Release, f.c.log, f.webSeedFailed, f.a.t.GotInfo())
	if b == nil {
		return
	}
	if err := f.a.t.SetInfoBytes(b); err != nil {
		f.c.log.Debug("metainfo from web seed refused", "err", err)
	}
}

// webSeedInfo fetches a release's metainfo from <ws><name>.torrent of
// each web seed in turn (again after 1 s, the pause doubling to a
// minute, while none serves it), and returns the first info that hashes
// to the release's infohash; nil once stop is closed (the info came
// another way) or ctx ends. failed is told why a web seed gave nothing.
func webSeedInfo(ctx context.Context, hc *http.Client, seeds []string, r record.Release, log *slog.Logger, failed func(string, error), stop <-chan struct{}) []byte {
	name := BundleName(r.Channel, r.Version)
	limit := maxInfoSize(r.Size) + 64<<10
	wait := time.Second
	for {
		for _, ws := range seeds {
			select {
			case <-stop:
				return nil
			default:
			}
			u := ws + webseed.EscapePath([]string{name + ".torrent"})
			b, err := getInfo(ctx, hc, u, limit)
			if err == nil && record.Infohash(sha1.Sum(b)) != r.Infohash {
				err = errors.New("metainfo is for another torrent")
			}
			if err != nil {
				if ctx.Err() != nil {
					return nil // the fetch ended: keep what the seed did before
				}
				log.Debug("no metainfo from web seed", "url", u, "err", err)
				failed(ws, fmt.Errorf("metainfo: %w", err))
				continue
			}
			return b
		}
		select {
		case <-ctx.Done():
			return nil
		case <-stop:
			return nil
		case <-time.After(wait):
			wait = min(2*wait, time.Minute)
		}
	}
}

// addWebSeed gives the torrent web seed ws unless usableWebSeed leaves
// it out.
func (f *fetch) addWebSeed(ctx context.Context, ws, name string) {
	if usableWebSeed(ctx, f.c.webClient(), ws, name, f.c.log, f.webSeedFailed) && ctx.Err() == nil {
		f.a.t.AddWebSeeds([]string{ws})
	}
}

// usableWebSeed reports whether web seed ws answered a range request for
// the bundle's relay.json as BEP 19 needs. One that answers with the
// whole file, or has no such file, is left out: the torrent library would
// ask it again and again, taking the whole file each time. One that does
// not answer (the server is away now) is kept, to be tried. failed is
// told why a web seed did not answer as it should.
func usableWebSeed(ctx context.Context, hc *http.Client, ws, name string, log *slog.Logger, failed func(string, error)) bool {
	u := ws + webseed.EscapePath([]string{name, record.ManifestName})
	err := probeRanges(ctx, hc, u)
	var refused refusedWebSeed
	if errors.As(err, &refused) {
		log.Warn("web seed left out", "url", ws, "err", err)
		failed(ws, err)
		return false
	}
	if err != nil && ctx.Err() == nil {
		log.Debug("web seed did not answer", "url", ws, "err", err)
		failed(ws, err)
	}
	return true
}

// webClient makes relay's own requests to web seeds, through the
// transport the torrent library's requests go through.
func (c *Client) webClient() *http.Client {
	return &http.Client{Transport: c.cfg.HTTPTransport}
}

// refusedWebSeed is a web seed's answer that shows it cannot serve the
// bundle.
type refusedWebSeed struct{ msg string }

func (e refusedWebSeed) Error() string { return e.msg }

// probeRanges asks u for its first byte. It returns a refusedWebSeed if
// the server answers with anything but that byte range.
func probeRanges(ctx context.Context, hc *http.Client, u string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return refusedWebSeed{err.Error()}
	}
	req.Header.Set("Range", "bytes=0-0")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusPartialContent:
		return nil
	case resp.StatusCode == http.StatusOK:
		return refusedWebSeed{"answers a byte range request with the whole file (200 OK, not 206): a BEP 19 web seed must serve ranges"}
	case resp.StatusCode >= 500:
		return fmt.Errorf("%s for %s", untrusted.String(resp.Status), untrusted.String(u))
	}
	return refusedWebSeed{fmt.Sprintf("%s for %s", untrusted.String(resp.Status), untrusted.String(u))}
}

func getInfo(ctx context.Context, hc *http.Client, u string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s", untrusted.String(resp.Status))
	}
	mi, err := metainfo.Load(io.LimitReader(resp.Body, limit))
	if err != nil {
		return nil, err
	}
	return mi.InfoBytes, nil
}
