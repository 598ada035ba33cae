package relay

import (
	"fmt"
	"strings"

	"github.com/relay-sh/relay/record"
)

// Executable picks the file of a release that is a program for goos and
// goarch: the one file built for that platform, or, when the release has
// one file in all, that file. Anything else is ambiguous and an error that
// lists the candidates.
func Executable(m *record.Manifest, goos, goarch string) (record.File, error) {
	var mine []record.File
	for _, f := range m.Select(goos, goarch) {
		if f.OS != "" {
			mine = append(mine, f)
		}
	}
	switch {
	case len(mine) == 1:
		return mine[0], nil
	case len(mine) == 0 && len(m.Files) == 1 && m.Files[0].OS == "":
		return m.Files[0], nil
	case len(mine) == 0:
		return record.File{}, fmt.Errorf("release %s has no file built for %s/%s", m.Version, goos, goarch)
	}
	var names []string
	for _, f := range mine {
		names = append(names, f.Path)
	}
	return record.File{}, fmt.Errorf("release %s has %d files for %s/%s (%s): which one is the program is ambiguous", m.Version, len(mine), goos, goarch, strings.Join(names, ", "))
}
