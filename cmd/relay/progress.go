package main

import (
	"fmt"
	"os"
	"sync"
	"time"

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

// progressBar returns a transfer progress callback that draws a bar on
// stderr when it is a terminal, and nil otherwise; finish clears it.
func (e *env) progressBar(what string) (update func(transfer.Progress), finish func()) {
	if !e.interactive() {
		return nil, func() {}
	}
	var mu sync.Mutex // update runs in the download's goroutine, finish in others
	var bar *progressbar.ProgressBar
	update = func(p transfer.Progress) {
		mu.Lock()
		defer mu.Unlock()
		if p.Total == 0 {
			return
		}
		if bar == nil {
			bar = progressbar.NewOptions64(p.Total,
				progressbar.OptionSetWriter(e.stderr),
				progressbar.OptionSetDescription(what),
				progressbar.OptionShowBytes(true),
				progressbar.OptionSetWidth(30),
				progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionClearOnFinish(),
			)
		}
		bar.Describe(fmt.Sprintf("%s (%d peers)", what, p.Peers))
		bar.Set64(p.Done)
	}
	return update, func() {
		mu.Lock()
		defer mu.Unlock()
		if bar != nil {
			bar.Finish()
		}
	}
}
