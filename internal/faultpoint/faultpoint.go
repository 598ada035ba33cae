// Package faultpoint marks the points of relay's install path where a
// test kills the process, to check that a kill at any of them leaves a
// whole file and a state the next run mends.
//
// In a normal build Hit does nothing and Writer returns its writer: both
// are inlined away and cost nothing. Built with the tag relayfault, Hit
// kills its own process with SIGKILL (TerminateProcess on Windows: a real,
// uncatchable kill, with no deferred function run) when the environment
// variable RELAY_FAULTPOINT equals the point's name, after writing the line
// "relay: fault point NAME reached: killing the process" to stderr.
//
// Under that tag only, this package reads the environment, prints and ends
// the process, which library code otherwise never does. Release builds
// never carry the tag.
package faultpoint

// Marker returns the line a build with the relayfault tag writes to stderr
// just before it kills itself at the point name.
func Marker(name string) string {
	return "relay: fault point " + name + " reached: killing the process"
}

// The points of an install, in the order a run of relay watch --install
// passes them (relay.Fetch, relay.ReplaceExecutable and the watch command's
// hand-over). What a kill at each leaves is the executable named, and the
// next run finishes or repeats the install.
const (
	// InstallBefore: the release is downloaded and verified; nothing is
	// placed or installed yet. Leaves the old executable.
	InstallBefore = "install-before"
	// InstallWrite: in the middle of writing the new executable's
	// temporary file beside the target (Writer). Leaves the old executable
	// and a partial temporary file.
	InstallWrite = "install-write"
	// InstallRename: the temporary file is whole and synced, not yet
	// renamed over the target. Leaves the old executable and a whole
	// temporary file.
	InstallRename = "install-rename"
	// InstallExec: the new executable is in place; the --exec command has
	// not run. Leaves the new executable, the old state.
	InstallExec = "install-exec"
	// InstallState: the --exec command has run; the new state is not
	// saved yet. Leaves the new executable, the old state.
	InstallState = "install-state"
	// InstallSaved: the new state is saved; the release is not reported
	// yet. Leaves the new executable and the new state.
	InstallSaved = "install-saved"
	// PlaceWrite: in the middle of writing a file's temporary file in
	// relay fetch's or watch's --out folder (Writer). Leaves the folder's
	// old files and a partial temporary file, which the next placing
	// removes.
	PlaceWrite = "place-write"
	// PlaceRename: every file is whole in its temporary file in the --out
	// folder (relay fetch moved it there from the bundle), none renamed
	// over its final name yet. Leaves the folder's old files and whole
	// temporary files, which the next placing removes.
	PlaceRename = "place-rename"
)
