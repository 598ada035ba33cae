package signer_test

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/relay-sh/relay/signer"
)

// A provider makes a key once and gives its users the public half, as
// text. A fixed random source keeps this example's output the same; pass
// nil (crypto/rand) for a real key.
func ExampleGenerate() {
	key, err := signer.Generate(bytes.NewReader(bytes.Repeat([]byte{1}, 32)))
	if err != nil {
		panic(err)
	}
	fmt.Println(key.PublicKey())
	// Output:
	// tkrq8zmwb8a3m9k15csu3q17qmfgqnp9dskbrg9uq1rydpyxp7qy
}

// A user reads the public key they were given; a mistyped one is refused
// before anything is looked up.
func ExampleParsePublicKey() {
	key, err := signer.ParsePublicKey("tkrq8zmwb8a3m9k15csu3q17qmfgqnp9dskbrg9uq1rydpyxp7qy")
	fmt.Println(key, err)

	_, err = signer.ParsePublicKey("tkrq8zmwb8a3m9k15csu3q17qmfgqnp9dskbrg9uq1rydpyxp7q")
	fmt.Println(errors.Is(err, signer.ErrMalformedKey))
	// Output:
	// tkrq8zmwb8a3m9k15csu3q17qmfgqnp9dskbrg9uq1rydpyxp7qy <nil>
	// true
}

// A key file sealed with a passphrase reads back only with it (a wrong
// one gives ErrWrongPassphrase).
// WriteKeyFile writes the same bytes to a file of mode 0600.
func ExampleMarshalKeyFile() {
	key, err := signer.NewPrivateKey(bytes.Repeat([]byte{1}, 32))
	if err != nil {
		panic(err)
	}
	file, err := signer.MarshalKeyFile(key, []byte("correct horse battery staple"), nil)
	if err != nil {
		panic(err)
	}
	fmt.Println(signer.IsSealed(file))

	passphrase := func() ([]byte, error) { return []byte("correct horse battery staple"), nil }
	back, err := signer.ParseKeyFile(file, passphrase)
	if err != nil {
		panic(err)
	}
	fmt.Println(back.PublicKey() == key.PublicKey())

	_, err = signer.ParseKeyFile(file, nil)
	fmt.Println(errors.Is(err, signer.ErrSealed))
	// Output:
	// true
	// true
	// true
}
