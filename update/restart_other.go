//go:build !unix && !windows

package update

import "errors"

func restart(string) error { return errors.ErrUnsupported }
