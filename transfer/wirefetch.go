package transfer

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/torrent/metainfo"

	"github.com/relay-sh/relay/internal/diskio"
	"github.com/relay-sh/relay/internal/peerwire"
	"github.com/relay-sh/relay/record"
)

// wireFetch is a Fetch on the wire engine: the info from peers
// (peerwire's FetchInfo) or a web seed, then one download of relay.json's
// pieces, checked, then one of the wanted files' pieces, handed over in
// order (DownloadOptions.InOrder) into each file's SHA-256 or its Tee.
type wireFetch struct {
	w       *wireClient
	b       *wireBundle
	req     FetchRequest
	dir     string
	created bool // the bundle's folder did not exist before this fetch
	seeds   []string

	stage   Stage
	total   int64
	done    atomic.Int64 // bytes of the wanted files (and relay.json) verified
	checked atomic.Int64 // bytes of those whose SHA-256 was checked
	meter   rateMeter

	ws webSeedNotes
}

// wireJob is a wanted file whose SHA-256 a wire fetch computes (or whose
// bytes it hands to a Tee) as its pieces arrive in order.
type wireJob struct {
	file     record.File
	j        int
	off      int64 // where the file starts in the torrent
	tee      io.WriteCloser
	chk      Checker
	h        hash.Hash
	pos      int64 // bytes fed
	finished bool
	wb       *diskio.Writeback
}

// fetch is Fetch on the wire engine.
func (w *wireClient) fetch(ctx context.Context, req FetchRequest) (*Fetched, error) {
	ih := req.Release.Infohash
	// The Client's Close ends the fetch, and waits for it.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(w.c.ctx, cancel)
	defer stop()
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil, fmt.Errorf("fetch: %w", errClosed)
	}
	w.wg.Add(1)
	w.mu.Unlock()
	defer w.wg.Done()

	f := &wireFetch{w: w, req: req, dir: filepath.Join(w.c.root, ih.String()), seeds: webSeeds(req.Release.WebSeeds)}
	if _, err := os.Stat(f.dir); errors.Is(err, fs.ErrNotExist) {
		f.created = true
	}
	b, err := w.add(ih)
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	f.b = b
	select {
	case b.sem <- struct{}{}:
	case <-ctx.Done():
		w.drop(b)
		return nil, fmt.Errorf("fetch: %w", ctx.Err())
	}
	w.mu.Lock()
	b.fetches++
	b.fleet.key = req.Key
	b.fleet.fetchedAt = time.Now()
	if !b.seeding {
		b.fleet.quiet = false // announced and looked up as any fetch
	}
	w.mu.Unlock()
	if req.Swarm {
		b.found(w.c.swarmAddrs(req.Key))
	}
	b.wakeUp()
	res, err := f.run(ctx)
	w.mu.Lock()
	b.fetches--
	w.mu.Unlock()
	<-b.sem
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w (%s)", err, f.sources())
		}
		w.drop(b)
		if serr := w.store.save(ih, true); serr != nil {
			w.c.log.Debug("failed to save bundle state", "infohash", ih, "err", serr)
		}
		f.cleanup(err)
		return nil, fmt.Errorf("fetch: %w", err)
	}
	return res, nil
}

// cleanup removes what a fetch downloaded when a check failed.
func (f *wireFetch) cleanup(err error) {
	if f.created && record.IsVerification(err) && f.w.bundle(f.b.ih) == nil {
		os.RemoveAll(f.dir)
	}
}

// sources says what the fetch got from where, for an error that ends it
// before it completed.
func (f *wireFetch) sources() string {
	var got int64
	peers := 0
	f.w.mu.Lock()
	t := f.b.t
	f.w.mu.Unlock()
	known := f.b.knownPeers()
	if t != nil {
		st := t.Stats()
		got, peers = st.Downloaded, st.Peers
		known = max(known, peers)
	}
	return f.ws.describe(fmt.Sprintf("got %d bytes; %d peers known, %d connected", got, known, peers))
}

func (f *wireFetch) run(ctx context.Context) (*Fetched, error) {
	r := f.req.Release
	ih := r.Infohash
	f.b.found(f.req.Peers)
	tick := time.NewTicker(cmp.Or(f.req.ProgressInterval, 200*time.Millisecond))
	defer tick.Stop()

	// 1. The info.
	f.report(true)
	var infoBytes []byte
	if !f.created {
		_, infoBytes, _ = loadMetainfo(f.dir, ih)
	}
	if infoBytes == nil {
		var err error
		if infoBytes, err = f.fetchInfo(ctx, tick.C); err != nil {
			return nil, err
		}
	}
	info, err := parseInfo(infoBytes, ih)
	if err != nil {
		return nil, err
	}
	if info.TotalLength() != r.Size {
		return nil, fmt.Errorf("%w: torrent is %d bytes, the record says %d", record.ErrManifestMismatch, info.TotalLength(), r.Size)
	}
	if _, err := findMetainfo(f.dir); err != nil {
		if err := os.MkdirAll(f.dir, 0o700); err != nil {
			return nil, err
		}
		if err := writeMetainfo(f.dir, info.Name, infoBytes); err != nil {
			return nil, err
		}
	}
	if err := f.w.attach(ctx, f.b, info, infoBytes); err != nil {
		return nil, err
	}
	f.w.mu.Lock()
	t, files := f.b.t, f.b.files
	f.w.mu.Unlock()
	byPath := filesByPath(info)
	f.probeWebSeeds(ctx, info.Name)

	// 2. The manifest, alone.
	f.stage = StageManifest
	mj := byPath[record.ManifestName]
	mOff, mFirst, mEnd := filePieces(info, mj)
	mLen := info.Files[mj].Length
	f.report(true)
	if err := f.download(ctx, t, tick.C, func(i int) bool { return i >= mFirst && i < mEnd }, nil); err != nil {
		return nil, fmt.Errorf("failed to fetch manifest: %w", err)
	}
	mb := make([]byte, mLen)
	if _, err := files.ReadAt(mb, mOff); err != nil {
		return nil, fmt.Errorf("failed to read manifest: %w", err)
	}
	m, err := matchManifest(f.req, info, byPath, mb)
	if err != nil {
		return nil, err
	}
	f.w.store.setChecked(ih, mj)

	// 3. The files.
	f.stage = StageFiles
	want := m.Select(f.req.OS, f.req.Arch)
	complete, checked, _, _ := f.w.store.view(ih)
	held := f.w.store.heldBefore(ih)
	f.total = mLen
	f.checked.Store(mLen)
	f.done.Store(mLen)
	wanted := make([]bool, len(complete))
	var jobs []*wireJob
	hashed, arrived := make(map[string]bool, len(want)), make(map[string]bool, len(want))
	for _, mf := range want {
		if mf.Size == 0 {
			if err := createEmpty(filepath.Join(f.dir, info.Name, filepath.FromSlash(mf.Path)), mf); err != nil {
				return nil, err
			}
			hashed[mf.Path] = true // its digest is checked in createEmpty
			continue
		}
		j := byPath[mf.Path]
		if j >= len(held) || !held[j] {
			arrived[mf.Path] = true
		}
		off, first, end := filePieces(info, j)
		for i := first; i < end; i++ {
			wanted[i] = true
			if complete[i] {
				f.done.Add(overlap(off, mf.Size, int64(i)*info.PieceLength, info.PieceLength))
			}
		}
		f.total += mf.Size
		if j < len(checked) && checked[j] {
			f.checked.Add(mf.Size)
			continue
		}
		jb := &wireJob{file: mf, j: j, off: off}
		if f.req.Tee != nil {
			jb.tee = f.req.Tee(mf)
		}
		jb.chk, _ = jb.tee.(Checker)
		if jb.chk == nil {
			jb.h = sha256.New()
		}
		if jb.tee == nil {
			// A file the caller reads as it comes in (an encrypted one,
			// decrypted into another file) is never synced: its
			// write-back is left to the system.
			jb.wb = diskio.NewWriteback(filepath.Join(f.dir, info.Name, filepath.FromSlash(mf.Path)))
		}
		hashed[mf.Path] = true
		jobs = append(jobs, jb)
	}
	slices.SortFunc(jobs, func(a, b *wireJob) int { return a.j - b.j })
	defer func() {
		for _, jb := range jobs {
			if !jb.finished && jb.tee != nil {
				jb.tee.Close() // the fetch of the file ended early
			}
			jb.wb.Close()
		}
	}()
	f.report(true)
	err = f.download(ctx, t, tick.C, func(i int) bool { return wanted[i] }, func(i int, data []byte) error {
		return f.stream(files, info, jobs, i, data)
	})
	if err != nil {
		return nil, err
	}
	for _, jb := range jobs {
		if err := f.finish(files, info, jb); err != nil {
			return nil, err
		}
	}
	for _, mf := range want {
		p := filepath.Join(f.dir, info.Name, filepath.FromSlash(mf.Path))
		if err := os.Chmod(p, fs.FileMode(mf.Mode)&^0o022|0o400); err != nil {
			return nil, err
		}
	}
	if err := f.w.store.save(ih, true); err != nil {
		f.w.c.log.Warn("failed to save bundle state", "infohash", ih, "err", err)
	}
	f.stage = StageDone
	f.report(true)
	f.stayConnected(t)
	bu := &Bundle{
		Infohash: ih, Name: info.Name, Dir: filepath.Join(f.dir, info.Name),
		Manifest: m, ManifestBytes: mb, ManifestDigest: r.Manifest,
		Size: r.Size, PieceLength: info.PieceLength,
	}
	return &Fetched{Bundle: bu, Files: want, Hashed: hashed, Arrived: arrived}, nil
}

// overlap returns how many bytes [a, a+n) and [b, b+m) share.
func overlap(a, n, b, m int64) int64 {
	return max(0, min(a+n, b+m)-max(a, b))
}

// stayConnected dials the bundle's peers it is not connected to once the
// fetch is done (at most maxSeedDials at once): the downloads keep their
// connections (Keep), but a fetch of pieces all here dialled none, and
// the client keeps serving the bundle, and speaking relay_record with the
// peers of its key, as the torrent library's engine does.
func (f *wireFetch) stayConnected(t *peerwire.Torrent) {
	f.w.mu.Lock()
	peers := slices.Collect(maps.Keys(f.b.peers))
	f.w.mu.Unlock()
	for _, p := range peers {
		f.b.dial(t, p, maxSeedDials)
	}
}

// probeWebSeeds leaves out the web seeds that usableWebSeed refuses,
// asking them all at once.
func (f *wireFetch) probeWebSeeds(ctx context.Context, name string) {
	ok := make([]bool, len(f.seeds))
	var wg sync.WaitGroup
	for k, ws := range f.seeds {
		wg.Go(func() { ok[k] = usableWebSeed(ctx, f.w.c.webClient(), ws, name, f.w.c.log, f.ws.note) })
	}
	wg.Wait()
	var kept []string
	for k, ws := range f.seeds {
		if ok[k] {
			kept = append(kept, ws)
		}
	}
	f.seeds = kept
}

// fetchInfo gets the torrent's info from peers (those named for the
// bundle, and those the DHT names while it runs) or from a web seed,
// whichever gives it first; it reports progress on each tick.
func (f *wireFetch) fetchInfo(ctx context.Context, tick <-chan time.Time) ([]byte, error) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	more := f.b.startDownload()
	defer f.b.endDownload()
	type result struct {
		info []byte
		err  error
	}
	results := make(chan result, 2)
	pending := 1
	wg.Go(func() {
		b, err := f.w.pw.FetchInfo(ctx, metainfo.Hash(f.b.ih), f.b.peerList(), more)
		results <- result{b, err}
	})
	if len(f.seeds) > 0 {
		pending++
		wg.Go(func() {
			b := webSeedInfo(ctx, f.w.c.webClient(), f.seeds, f.req.Release, f.w.c.log, f.ws.note, nil)
			results <- result{b, ctx.Err()}
		})
	}
	var last error
	for pending > 0 {
		select {
		case r := <-results:
			pending--
			if r.err == nil && r.info != nil {
				return r.info, nil
			}
			last = r.err
		case <-tick:
			f.report(false)
		}
	}
	if last == nil {
		last = errors.New("no info")
	}
	return nil, last
}

// download runs a download of the pieces want wants from the bundle's
// peers (and those the DHT names while it runs) and web seeds, in order,
// recording each verified piece in the bundle's state and handing it to
// onPiece; it reports progress on each tick.
func (f *wireFetch) download(ctx context.Context, t *peerwire.Torrent, tick <-chan time.Time, want func(int) bool, onPiece func(int, []byte) error) error {
	more := f.b.startDownload()
	defer f.b.endDownload()
	ih := metainfo.Hash(f.b.ih)
	o := peerwire.DownloadOptions{
		Peers: f.b.peerList(), MorePeers: more, InOrder: true, Want: want, Keep: f.b.ctx,
		WebSeeds: f.seeds, WebSeedDropped: f.ws.note,
		OnPiece: func(i int, data []byte) error {
			if err := f.w.waitRate(ctx, len(data)); err != nil {
				return err
			}
			f.w.store.Set(metainfo.PieceKey{InfoHash: ih, Index: i}, true)
			if onPiece == nil {
				f.done.Add(int64(len(data)))
				return nil
			}
			return onPiece(i, data)
		},
	}
	done := make(chan error, 1)
	go func() { done <- t.Download(ctx, o) }()
	for {
		select {
		case err := <-done:
			return err
		case <-tick:
			f.report(false)
		}
	}
}

// stream feeds piece i's bytes (data) to the jobs whose files it holds
// data of, after what they lack before it (pieces had before this fetch)
// read from disk, and finishes a job whose file it ends.
func (f *wireFetch) stream(files *wireFiles, info *metainfo.Info, jobs []*wireJob, i int, data []byte) error {
	start := int64(i) * info.PieceLength
	for _, jb := range jobs {
		if jb.finished || jb.off >= start+int64(len(data)) || jb.off+jb.file.Size <= start {
			continue
		}
		lo := max(start, jb.off) - jb.off
		hi := min(start+int64(len(data)), jb.off+jb.file.Size) - jb.off
		if err := f.catchUp(files, jb, lo); err != nil {
			return err
		}
		if jb.pos == lo {
			jb.feed(data[jb.off+lo-start : jb.off+hi-start])
			f.checked.Add(hi - lo)
			f.done.Add(hi - lo)
		}
		if jb.pos == jb.file.Size {
			if err := f.finish(files, info, jb); err != nil {
				return err
			}
		}
	}
	return nil
}

// feed hands b, the file's next bytes, to its hash and Tee.
func (jb *wireJob) feed(b []byte) {
	if jb.h != nil {
		jb.h.Write(b)
	}
	if jb.tee != nil {
		jb.tee.Write(b)
	}
	jb.wb.Hint(jb.pos, int64(len(b)))
	jb.pos += int64(len(b))
}

// catchUp feeds a job its file's bytes from disk up to to (pieces that
// were verified before this fetch).
func (f *wireFetch) catchUp(files *wireFiles, jb *wireJob, to int64) error {
	if jb.pos >= to {
		return nil
	}
	buf := make([]byte, min(to-jb.pos, 1<<20))
	for jb.pos < to {
		b := buf[:min(int64(len(buf)), to-jb.pos)]
		if _, err := files.ReadAt(b, jb.off+jb.pos); err != nil {
			return fmt.Errorf("failed to read back %s: %w", jb.file.Path, err)
		}
		jb.feed(b)
		f.checked.Add(int64(len(b)))
	}
	return nil
}

// finish ends a job once its file's pieces are verified: it feeds what is
// left from disk, closes its Tee, and checks the file's SHA-256 (or what
// its Checker says).
func (f *wireFetch) finish(files *wireFiles, info *metainfo.Info, jb *wireJob) error {
	if jb.finished {
		return nil
	}
	if err := f.catchUp(files, jb, jb.file.Size); err != nil {
		return err
	}
	jb.finished = true
	if jb.tee != nil {
		jb.tee.Close()
	}
	h, n := jb.h, jb.pos
	if jb.chk != nil && !jb.chk.Checked() {
		// What the Checker did not vouch for is checked as any file is.
		h = sha256.New()
		var err error
		if n, err = hashFile(filepath.Join(f.dir, info.Name, filepath.FromSlash(jb.file.Path)), h); err != nil {
			return fmt.Errorf("failed to check %s: %w", jb.file.Path, err)
		}
	} else if jb.chk != nil {
		h = nil
	}
	if h != nil {
		if err := checkDigest(jb.file, h, n); err != nil {
			return err
		}
	}
	f.w.store.setChecked(f.b.ih, jb.j)
	return nil
}

// report calls the progress callback, if any, every interval or now.
func (f *wireFetch) report(now bool) {
	if f.req.Progress == nil {
		return
	}
	f.w.mu.Lock()
	t := f.b.t
	f.w.mu.Unlock()
	known := f.b.knownPeers()
	var st peerwire.Stats
	if t != nil {
		st = t.Stats()
	}
	if !f.meter.take(st.Downloaded, now) {
		return
	}
	p := Progress{
		Infohash: f.b.ih, Stage: f.stage, Total: f.total, Rate: f.meter.rate, Peers: st.Peers, Known: max(known, st.Peers),
		Done: min(f.done.Load(), f.total), Checked: min(f.checked.Load(), f.total),
	}
	if f.stage < StageFiles {
		p.Done, p.Checked = 0, 0
	}
	if f.stage == StageDone {
		p.Done, p.Checked = f.total, f.total
	}
	f.req.Progress(p)
}

// knownPeers returns how many of the peers named for the bundle are
// still worth a dial: those the client's dials did not fail to reach, as
// the torrent library forgets a peer it failed to dial
// (Progress.Known).
func (b *wireBundle) knownPeers() int {
	b.w.mu.Lock()
	peers := slices.Collect(maps.Keys(b.peers))
	b.w.mu.Unlock()
	c := b.w.c
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, p := range peers {
		if d, ok := c.dials.notes[p]; !ok || d.state != DialFailed {
			n++
		}
	}
	return n
}

// startDownload returns the channel a download of the bundle takes the
// peers found while it runs from.
func (b *wireBundle) startDownload() chan string {
	more := make(chan string, 256)
	b.w.mu.Lock()
	b.more = more
	b.w.mu.Unlock()
	return more
}

// endDownload ends what startDownload started.
func (b *wireBundle) endDownload() {
	b.w.mu.Lock()
	b.more = nil
	b.w.mu.Unlock()
}

// peerList returns the addresses of the peers named for the bundle.
func (b *wireBundle) peerList() []string {
	b.w.mu.Lock()
	defer b.w.mu.Unlock()
	out := make([]string, 0, len(b.peers))
	for p := range b.peers {
		out = append(out, p.String())
	}
	return out
}
