package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

// Version is relay's version, set at build time with
// -ldflags "-X main.Version=1.2.3"; when empty, the module version from
// the build information is used.
var Version string

func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

func versionCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print relay's version",
		Action: func(c *cli.Context) error {
			v := struct {
				Version string `json:"version"`
				Go      string `json:"go"`
				OS      string `json:"os"`
				Arch    string `json:"arch"`
			}{version(), runtime.Version(), runtime.GOOS, runtime.GOARCH}
			return e.result(v, func(w io.Writer) {
				fmt.Fprintf(w, "relay %s (%s %s/%s)\n", v.Version, v.Go, v.OS, v.Arch)
			})
		},
	}
}
