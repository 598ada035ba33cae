package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"github.com/relay-sh/relay/signer"
	"golang.org/x/term"
)

// passphraseEnv names the variable a sealed key's passphrase may come from.
const passphraseEnv = "RELAY_PASSPHRASE"

// keyPath returns --key, or the default key file.
func keyPath(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	return defaultKeyFile()
}

// loadKey reads a key file, asking for its passphrase if it is sealed.
func (e *env) loadKey(path string) (*signer.PrivateKey, error) {
	return signer.ReadKeyFile(path, e.askPassphrase(path))
}

// askPassphrase asks for the passphrase of the key file at path.
func (e *env) askPassphrase(path string) signer.Passphrase {
	return func() ([]byte, error) {
		return e.passphrase(fmt.Sprintf("passphrase for %s: ", path), false)
	}
}

// passphrase returns RELAY_PASSPHRASE or, on a terminal, what the user
// types (twice when confirm is set).
func (e *env) passphrase(prompt string, confirm bool) ([]byte, error) {
	if p, ok := os.LookupEnv(passphraseEnv); ok {
		return []byte(p), nil
	}
	f, ok := e.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, errors.New("no passphrase: " + passphraseEnv + " is not set and stdin is not a terminal")
	}
	read := func(prompt string) ([]byte, error) {
		fmt.Fprint(e.stderr, prompt)
		p, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(e.stderr)
		return p, err
	}
	p, err := read(prompt)
	if err != nil || !confirm {
		return p, err
	}
	again, err := read("again: ")
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(p, again) {
		return nil, errors.New("the passphrases differ")
	}
	return p, nil
}

// parseKeyArg parses a public key given on the command line: a bad one is
// a usage error.
func parseKeyArg(s string) (signer.PublicKey, error) {
	k, err := signer.ParsePublicKey(s)
	if err != nil {
		return k, usageError{err}
	}
	return k, nil
}
