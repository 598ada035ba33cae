package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"unicode/utf8"

	"github.com/relay-sh/relay/signer"
	"github.com/urfave/cli/v2"
)

// minPassphrase is the fewest characters relay init seals a key with:
// NIST SP 800-63B's minimum for a memorized secret. scrypt slows a guess,
// it does not make a short passphrase safe.
const minPassphrase = 8

func initCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "make a provider key and print its public key",
		Description: "Writes a new ed25519 key to --key (default: " + "the relay folder of your config directory" + ") with mode 0600,\n" +
			"never replacing a file. With --seal, or when RELAY_PASSPHRASE is set, the key is sealed with a passphrase.\n" +
			"The public key printed on stdout is what users follow.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "key", Usage: "key file to write, `FILE`", EnvVars: []string{"RELAY_KEY"}},
			&cli.BoolFlag{Name: "seal", Usage: "seal the key with a passphrase (asked on the terminal, or RELAY_PASSPHRASE)"},
		},
		Action: func(c *cli.Context) error {
			path, err := keyPath(c.String("key"))
			if err != nil {
				return err
			}
			var pass []byte
			if _, set := os.LookupEnv(passphraseEnv); c.Bool("seal") || set {
				if pass, err = e.passphrase("passphrase for the new key: ", true); err != nil {
					return err
				}
				if n := utf8.RuneCount(pass); n < minPassphrase {
					return usagef("a passphrase of %d characters is too short to seal a key: use at least %d", n, minPassphrase)
				}
			}
			k, err := signer.Generate(nil)
			if err != nil {
				return err
			}
			if err := signer.WriteKeyFile(path, k, pass); err != nil {
				if errors.Is(err, fs.ErrExist) {
					return withHint(err, "a key file holds a private key: choose another --key, or remove the old one if you are sure")
				}
				return err
			}
			if len(pass) == 0 {
				e.note("wrote %s (not sealed; to seal a key with a passphrase, make it with `relay init --seal`)", path)
			} else {
				e.note("wrote %s (sealed)", path)
			}
			return e.printKey(path, k.PublicKey(), len(pass) > 0)
		},
	}
}

func keyCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "key",
		Usage:     "print a key file's public key",
		ArgsUsage: "FILE",
		Action: func(c *cli.Context) error {
			path := c.Args().First()
			k, sealed, err := signer.ReadPublicKey(path, e.askPassphrase(path))
			if err != nil {
				return err
			}
			return e.printKey(path, k, sealed)
		},
	}
}

func (e *env) printKey(path string, k signer.PublicKey, sealed bool) error {
	return e.result(struct {
		PublicKey signer.PublicKey `json:"public_key"`
		File      string           `json:"file"`
		Sealed    bool             `json:"sealed,omitempty"`
	}{k, path, sealed}, func(w io.Writer) {
		fmt.Fprintln(w, k)
	})
}
