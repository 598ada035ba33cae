//go:build !unix

package update

func stickyDenied(dir, exe string) error { return nil }
