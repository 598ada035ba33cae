package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"regexp"
	"strings"
	"syscall"

	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/dht"
	"github.com/relay-sh/relay/internal/untrusted"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
)

// Exit codes, as docs/spec/verification.md and docs/cli.md document them
// (cmd/relay/reference_test.go writes docs/cli.md's table from these).
const (
	exitOK       = 0
	exitError    = 1
	exitUsage    = 2
	exitVerify   = 3
	exitNotFound = 4
	// exitIdentity: the release is encrypted and no --identity given
	// reads it (relay.ErrNoIdentity).
	exitIdentity = 5
	// exitRevoked: the release installed here was signed by a key the
	// root's delegation now revokes, and nothing newer replaces it
	// (relay.ErrRevokedInstall).
	exitRevoked = 6
)

// usageError is a command line relay cannot run: exit code 2.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

// hinted attaches a hint, printed on its own line after the error.
type hinted struct {
	err  error
	hint string
}

func (h hinted) Error() string { return h.err.Error() }
func (h hinted) Unwrap() error { return h.err }

func withHint(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return hinted{err, fmt.Sprintf(format, args...)}
}

// exitCode maps an error to relay's documented exit codes. This switch is
// the only place that does.
func exitCode(err error) int {
	var u usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &u):
		return exitUsage
	case errors.Is(err, record.ErrNoRelease) || errors.Is(err, dht.ErrNotFound):
		return exitNotFound
	case errors.Is(err, relay.ErrNoIdentity):
		return exitIdentity
	case errors.Is(err, relay.ErrRevokedInstall):
		return exitRevoked
	case record.IsVerification(err):
		return exitVerify
	}
	return exitError
}

// report prints err as `relay: error: ...` (one line) and a hint, and
// returns the exit code.
func report(stderr io.Writer, err error) int {
	if err == nil {
		return exitOK
	}
	msg := strings.ReplaceAll(err.Error(), "\n", "; ")
	msg = flagMessage(msg)
	// The last line of defence: whatever a peer, a web seed or a
	// manifest put in the error, the terminal gets no control character.
	fmt.Fprintf(stderr, "relay: error: %s\n", untrusted.Escape(msg))
	if h := hintFor(err); h != "" {
		fmt.Fprintf(stderr, "relay: hint: %s\n", untrusted.Escape(h))
	}
	return exitCode(err)
}

// flagWords are the messages of Go's flag package, which names a flag
// with one dash (-version); FLAG in each replacement is the flag as
// relay's help writes it.
var flagWords = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`^flag provided but not defined: -(?P<name>\S+)`), "unknown flag FLAG"},
	{regexp.MustCompile(`^flag needs an argument: -(?P<name>\S+)`), "FLAG needs a value"},
	{regexp.MustCompile(`^invalid (?:boolean )?value (?P<value>"[^"]*") for (?:flag )?-(?P<name>[^:\s]+): `), "FLAG: invalid value ${value}: "},
}

// flagMessage rewrites an error message of Go's flag package so that it
// names the flag as it is typed: --version, -q.
func flagMessage(msg string) string {
	for _, w := range flagWords {
		m := w.re.FindStringSubmatchIndex(msg)
		if m == nil {
			continue
		}
		i := w.re.SubexpIndex("name")
		name := msg[m[2*i]:m[2*i+1]]
		flag := "--" + name
		if len(name) == 1 {
			flag = "-" + name
		}
		return string(w.re.ExpandString(nil, strings.ReplaceAll(w.with, "FLAG", flag), msg, m)) + msg[m[1]:]
	}
	return msg
}

func hintFor(err error) string {
	var h hinted
	var u usageError
	switch {
	case errors.As(err, &h):
		return h.hint
	case errors.Is(err, signer.ErrLooseMode):
		return "a key file must be private to its owner: chmod 600 it"
	case errors.Is(err, signer.ErrSealed):
		return "the key is sealed: set RELAY_PASSPHRASE or run relay on a terminal to be asked"
	case errors.Is(err, signer.ErrMalformedKey):
		return "a public key is 52 z-base-32 characters, as `relay init` and `relay key` print"
	case errors.Is(err, fs.ErrNotExist) && strings.Contains(err.Error(), "key file"):
		return "make a key with `relay init`"
	case errors.Is(err, relay.ErrNoIdentity):
		return "the release is encrypted to its provider's chosen recipients: give --identity FILE with your age identity, and ask the provider to add your public key (age-keygen -y FILE prints it) if it is not among them"
	case errors.Is(err, relay.ErrRevokedInstall):
		return "a thief may have published the release installed here: stop it, and install the provider's next release (above the installed version) as soon as it is out"
	case errors.Is(err, record.ErrThreshold):
		return "the root's delegation needs more release keys to sign this release (relay cosign), or they signed different bundles"
	case errors.Is(err, syscall.EADDRINUSE):
		return "another process listens on that port (a relay node or seed already running?): stop it, or give --listen host:port another port, or port 0 for any"
	case errors.Is(err, relay.ErrDataDirInUse):
		return "give each relay process its own --data-dir (RELAY_DATA_DIR)"
	case errors.Is(err, relay.ErrNoPath):
		return "check --relays (RELAY_RELAYS) and the network: where UDP is blocked, only HTTP relays reach the records"
	case errors.Is(err, dht.ErrNoNodes):
		return "no DHT node answered: check --bootstrap (RELAY_BOOTSTRAP) and the network; where UDP is blocked, give pkarr HTTP relays with --relays URL"
	case errors.Is(err, dht.ErrNotFound):
		return "nothing is published under this key, or the record has expired from the DHT: check the key"
	case errors.As(err, &u):
		return "see `relay help` or `relay COMMAND --help`"
	}
	return ""
}
