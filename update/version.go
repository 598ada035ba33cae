package update

import (
	"fmt"
	"runtime/debug"

	"github.com/relay-sh/relay/record"
)

// BuildVersion returns the running program's version. set, when not empty,
// is it: typically a variable given at build time,
//
//	go build -ldflags "-X main.version=1.2.3"
//
// Otherwise it is the main module's version that the go command recorded
// in the binary (debug.ReadBuildInfo): the tag of `go install
// example.com/app@v1.2.3`, or the version it derived from the repository
// a binary was built in. A binary built from source with neither has no
// version (the go command records "(devel)"): ErrNoVersion.
func BuildVersion(set string) (record.Version, error) {
	if set != "" {
		v, err := record.ParseVersion(set)
		if err != nil {
			return record.Version{}, fmt.Errorf("%w: %q: %w", ErrNoVersion, set, err)
		}
		return v, nil
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return record.Version{}, fmt.Errorf("%w: the binary has no build information", ErrNoVersion)
	}
	return moduleVersion(bi.Main.Version)
}

func moduleVersion(s string) (record.Version, error) {
	if s == "" || s == "(devel)" {
		return record.Version{}, fmt.Errorf("%w: built from source without one; set it with -ldflags -X", ErrNoVersion)
	}
	v, err := record.ParseVersion(s)
	if err != nil {
		return record.Version{}, fmt.Errorf("%w: module version %q: %w", ErrNoVersion, s, err)
	}
	return v, nil
}
