package transfer

import (
	"strings"
)

// Platform names of Go (go tool dist list), and the other spellings release
// file names commonly use for them.
var (
	osNames = map[string]string{
		"aix": "aix", "android": "android", "darwin": "darwin", "dragonfly": "dragonfly",
		"freebsd": "freebsd", "illumos": "illumos", "ios": "ios", "js": "js", "linux": "linux",
		"netbsd": "netbsd", "openbsd": "openbsd", "plan9": "plan9", "solaris": "solaris",
		"wasip1": "wasip1", "windows": "windows",
		"macos": "darwin", "osx": "darwin", "win": "windows", "win32": "windows", "win64": "windows",
	}
	archNames = map[string]string{
		"386": "386", "amd64": "amd64", "arm": "arm", "arm64": "arm64", "loong64": "loong64",
		"mips": "mips", "mips64": "mips64", "mips64le": "mips64le", "mipsle": "mipsle",
		"ppc64": "ppc64", "ppc64le": "ppc64le", "riscv64": "riscv64", "s390x": "s390x", "wasm": "wasm",
		"x64": "amd64", "aarch64": "arm64", "i386": "386", "i686": "386", "x86": "386",
		"armv6": "arm", "armv7": "arm", "armhf": "arm",
		// A universal (darwin) build or a "<os>_all" archive is for every
		// architecture of its system.
		"all": "", "universal": "",
	}
)

// RecognisePlatform returns the platform a release file is built for, as
// recognised from its path: a system name directly followed by an
// architecture name, separated by '_', '-', '.' or '/' (case ignored, so
// "app_linux_amd64", "app-darwin-arm64.tar.gz", "app_Linux_x86_64.tar.gz",
// "linux-arm64/app"); "<system>_all" or "<system>-universal" gives an empty
// arch. A name ending in ".exe" is for windows, with the arch named
// anywhere in it. ok is false when the path names no platform; the file is
// then for every platform.
func RecognisePlatform(path string) (goos, goarch string, ok bool) {
	p := strings.ToLower(path)
	p = strings.NewReplacer("x86_64", "amd64", "x86-64", "amd64").Replace(p)
	tokens := strings.FieldsFunc(p, func(r rune) bool {
		return r == '_' || r == '-' || r == '.' || r == '/' || r == ' '
	})
	for i := 0; i+1 < len(tokens); i++ {
		o, isOS := osNames[tokens[i]]
		a, isArch := archNames[tokens[i+1]]
		if isOS && isArch {
			return o, a, true
		}
	}
	if strings.HasSuffix(p, ".exe") {
		for _, t := range tokens {
			if a, isArch := archNames[t]; isArch && a != "" {
				return "windows", a, true
			}
		}
		return "windows", "", true
	}
	return "", "", false
}
