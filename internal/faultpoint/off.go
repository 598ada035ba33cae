//go:build !relayfault

package faultpoint

import "io"

// Hit marks the fault point name; it does nothing in this build.
func Hit(name string) {}

// Writer marks a fault point inside a write to w; in this build it returns
// w unchanged.
func Writer(name string, w io.Writer) io.Writer { return w }
