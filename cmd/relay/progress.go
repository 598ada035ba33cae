package main

import (
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/transfer"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// interactive reports whether people watch stderr: a terminal, and
// neither --json nor -q.
func (e *env) interactive() bool {
	if e.json || e.quiet {
		return false
	}
	f, ok := e.stderr.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// drawLine draws s as the live line at the bottom of a terminal's
// stderr, replacing the last one; clearLine erases it.
func (e *env) drawLine(s string) { fmt.Fprint(e.stderr, "\r\033[K"+s) }
func (e *env) clearLine()        { fmt.Fprint(e.stderr, "\r\033[K") }

// stageView shows the stages of a fetch to whoever reads stderr: a line
// as each stage begins, and on a terminal a bar while the files download
// and their hashes are checked. Under --json or -q it shows nothing;
// when stderr is not a terminal (a log file, a pipe) it writes the lines
// only, with no bar and no control codes. stdout is never touched.
type stageView struct {
	e       *env
	on, tty bool
	follow  string // KEY/CHANNEL
	out     string
	// watch: a check that finds nothing new says nothing.
	watch bool

	mu    sync.Mutex
	stage relay.Stage
	rel   record.Release
	since time.Time
	bar   *progressbar.ProgressBar
	line  bool // a live line is drawn (metadata)
	last  transfer.Progress
}

func (e *env) stageView(o relay.FetchOptions, watch bool) *stageView {
	ch := o.Channel
	if ch == "" {
		ch = defaultChannel
	}
	return &stageView{e: e, on: !e.json && !e.quiet, tty: e.interactive(), follow: o.Key.String() + "/" + ch, out: o.Out, watch: watch}
}

// attach sets o's stage and progress callbacks to the view's.
func (v *stageView) attach(o *relay.FetchOptions) {
	if v.on {
		o.OnStage, o.Progress = v.onStage, v.onProgress
	}
}

func (v *stageView) onStage(s relay.Stage, r record.Release) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.clearBar()
	if v.stage == relay.StageDownloading || v.stage == relay.StageVerifying {
		if s != relay.StageVerifying && v.last.Total > 0 {
			d := time.Since(v.since)
			v.e.note("downloaded and verified %s in %.1f s (%s/s)", megabytes(v.last.Total), d.Seconds(), megabytes(int64(float64(v.last.Total)/max(d.Seconds(), 0.001))))
		}
	}
	if s != relay.StageVerifying {
		v.since = time.Now()
	}
	v.stage, v.rel = s, r
	release := r.Channel + " " + r.Version.String()
	switch s {
	case relay.StageResolving:
		if !v.watch {
			v.e.note("resolving %s in the DHT%s", v.follow, v.e.andRelays())
		}
	case relay.StageMetadata:
		v.e.note("metadata: looking for peers that have %s, its torrent info and relay.json", release)
	case relay.StageDownloading:
		v.e.note("downloading %s (a bundle of %s)", release, megabytes(r.Size))
	case relay.StageVerifying:
		v.e.note("verifying: every byte of %s is here; checking the files' SHA-256", release)
	case relay.StagePlacing:
		v.e.note("placing the files of %s in %s", release, v.out)
	case relay.StageInstalling:
		v.e.note("installing %s", release)
	case relay.StageDone:
		v.stage = ""
	}
}

func (v *stageView) onProgress(p transfer.Progress) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.last = p
	if v.tty && v.stage == relay.StageMetadata {
		// Finding peers can take a while: say how long, and how many.
		v.e.drawLine(fmt.Sprintf("looking for peers: %d connected, %.0f s", p.Peers, time.Since(v.since).Seconds()))
		v.line = true
		return
	}
	if !v.tty || p.Total == 0 || (v.stage != relay.StageDownloading && v.stage != relay.StageVerifying) {
		return
	}
	if v.bar == nil {
		v.bar = progressbar.NewOptions64(p.Total,
			progressbar.OptionSetWriter(v.e.stderr),
			progressbar.OptionSetDescription(string(v.stage)),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetRenderBlankState(true),
			progressbar.OptionClearOnFinish(),
		)
	}
	if v.stage == relay.StageVerifying {
		v.bar.Describe("verifying")
		v.bar.Set64(p.Checked)
		return
	}
	v.bar.Describe("downloading from " + count(p.Peers, "peer"))
	v.bar.Set64(p.Done)
}

// clearBar erases the bar or live line, if one is drawn. v.mu is held.
func (v *stageView) clearBar() {
	if v.line {
		v.e.clearLine()
		v.line = false
	}
	if v.bar != nil {
		v.bar.Clear()
		v.bar = nil
	}
}

// finish erases the bar and readies the view for the next fetch (watch).
func (v *stageView) finish() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.clearBar()
	v.stage, v.last = "", transfer.Progress{}
}

// seedView shows, while a publisher waits for peers, whom it is seeding
// to: a live line on a terminal, else a line each time another peer
// holds the whole bundle.
type seedView struct {
	e    *env
	done chan struct{}
	wg   sync.WaitGroup
}

func (e *env) seedView(cl *relay.Client, ih record.Infohash, want int) *seedView {
	v := &seedView{e: e, done: make(chan struct{})}
	if e.json || e.quiet {
		return v
	}
	tty := e.interactive()
	v.wg.Go(func() {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		complete, peers := 0, 0
		for {
			select {
			case <-v.done:
				if tty {
					e.clearLine()
				}
				return
			case <-t.C:
			}
			s, ok := cl.BundleStats(ih)
			if !ok {
				continue
			}
			switch {
			case tty:
				e.drawLine(fmt.Sprintf("seeding to %s: %d of %d hold the whole bundle, %s sent", count(s.Peers, "peer"), min(s.CompletePeers, want), want, megabytes(s.Uploaded)))
			case s.CompletePeers > complete:
				e.note("seeding: %d of %s hold the whole bundle, %s sent", min(s.CompletePeers, want), count(want, "peer"), megabytes(s.Uploaded))
			case s.Peers > 0 && peers == 0:
				e.note("seeding to %s", count(s.Peers, "peer"))
			}
			complete, peers = s.CompletePeers, s.Peers
		}
	})
	return v
}

func (v *seedView) stop() {
	select {
	case <-v.done:
	default:
		close(v.done)
	}
	v.wg.Wait()
}
