//go:build relayfault

package faultpoint

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"time"
)

// armed is the point this process dies at: RELAY_FAULTPOINT.
var armed = os.Getenv("RELAY_FAULTPOINT")

// Hit kills the process if name is the armed point.
func Hit(name string) {
	if name == armed {
		kill(name)
	}
}

// Writer returns w, or, if name is the armed point, a writer that passes
// on the first RELAY_FAULTPOINT_BYTES bytes (default 1) written to it and
// then kills the process: a kill in the middle of a write.
func Writer(name string, w io.Writer) io.Writer {
	if name != armed {
		return w
	}
	n, err := strconv.ParseInt(os.Getenv("RELAY_FAULTPOINT_BYTES"), 10, 64)
	if err != nil || n < 1 {
		n = 1
	}
	return &killWriter{name: name, w: w, left: n}
}

type killWriter struct {
	name string
	w    io.Writer
	left int64
}

func (k *killWriter) Write(p []byte) (int, error) {
	if int64(len(p)) < k.left {
		k.left -= int64(len(p))
		return k.w.Write(p)
	}
	if _, err := k.w.Write(p[:k.left]); err != nil {
		return 0, err
	}
	kill(k.name)
	panic("unreachable")
}

// kill writes the marker and sends the process SIGKILL. It never
// returns: the signal ends the process before the kill call comes back
// to it, and if it did not, the process would wait here to be ended.
func kill(name string) {
	fmt.Fprintln(os.Stderr, Marker(name))
	if p, err := os.FindProcess(os.Getpid()); err == nil {
		p.Kill()
	}
	for {
		time.Sleep(time.Hour)
	}
}
