package update

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ErrManaged: the executable was installed by a package manager, which
// would not know of a replaced file (its checks would fail, its next
// upgrade would overwrite or conflict with it). The updater refuses it
// unless Config.AllowManaged; Run returns it at once. The program should
// leave updates to the package manager (notify only, at most).
var ErrManaged = errors.New("executable is managed by a package manager")

// dpkgInfo is where dpkg lists each package's files, one path a line in
// <package>.list; a variable for tests.
var dpkgInfo = "/var/lib/dpkg/info"

// managed reports, as an error wrapping ErrManaged, whether a package
// manager installed exe (a path with symbolic links resolved): a file in a
// Homebrew Cellar or Caskroom, the Nix store or a snap, or one a dpkg
// package lists. RPM's database is not read.
func managed(exe string) error {
	parts := strings.Split(filepath.ToSlash(exe), "/")
	switch {
	case slices.Contains(parts, "Cellar") || slices.Contains(parts, "Caskroom"):
		return fmt.Errorf("%w: %s is in a Homebrew %s; upgrade it with brew", ErrManaged, exe, map[bool]string{true: "Cellar", false: "Caskroom"}[slices.Contains(parts, "Cellar")])
	case strings.HasPrefix(exe, "/nix/store/"):
		return fmt.Errorf("%w: %s is in the Nix store", ErrManaged, exe)
	case strings.HasPrefix(exe, "/snap/"):
		return fmt.Errorf("%w: %s belongs to a snap", ErrManaged, exe)
	}
	if pkg := dpkgOwner(exe); pkg != "" {
		return fmt.Errorf("%w: %s belongs to the dpkg package %s; upgrade it with apt", ErrManaged, exe, pkg)
	}
	return nil
}

// dpkgOwner returns the dpkg package that lists exe (or, on a system with
// a merged /usr, exe without its /usr prefix), or "".
func dpkgOwner(exe string) string {
	lists, _ := filepath.Glob(filepath.Join(dpkgInfo, "*.list"))
	alt := ""
	if rest, ok := strings.CutPrefix(exe, "/usr/"); ok {
		alt = "/" + rest
	}
	for _, l := range lists {
		if listed(l, exe, alt) {
			return strings.TrimSuffix(filepath.Base(l), ".list")
		}
	}
	return ""
}

func listed(list, exe, alt string) bool {
	f, err := os.Open(list)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := sc.Text(); l == exe || alt != "" && l == alt {
			return true
		}
	}
	return false
}
