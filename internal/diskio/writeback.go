package diskio

import (
	"os"
	"sync"
)

// Writeback starts the write-back of ranges of one file (StartWriteback)
// from a goroutine of its own, so that its caller never waits for the
// disk: on a busy disk the system makes a request to start writing wait
// until its queue has room. Hints that come while the goroutine is still
// busy with earlier ones beyond a few are dropped; their data is written
// later, by the system or by a sync. A nil *Writeback does nothing.
type Writeback struct {
	f      *os.File
	ranges chan [2]int64
	done   chan struct{}
	wg     sync.WaitGroup
}

// NewWriteback opens the file at path for hints, or returns nil if it
// cannot (the hints are only hints).
func NewWriteback(path string) *Writeback {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	w := &Writeback{f: f, ranges: make(chan [2]int64, 16), done: make(chan struct{})}
	w.wg.Go(func() {
		for {
			select {
			case <-w.done:
				return
			case r := <-w.ranges:
				StartWriteback(w.f.Fd(), r[0], r[1])
			}
		}
	})
	return w
}

// Hint asks for the write-back of the n bytes at off to start soon.
func (w *Writeback) Hint(off, n int64) {
	if w == nil {
		return
	}
	select {
	case w.ranges <- [2]int64{off, n}:
	default:
	}
}

// Close drops the hints not yet passed on, waits for the one being passed
// on, and closes the file.
func (w *Writeback) Close() {
	if w == nil {
		return
	}
	close(w.done)
	w.wg.Wait()
	w.f.Close()
}
