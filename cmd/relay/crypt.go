package main

import (
	"fmt"

	"github.com/relay-sh/relay"
	"github.com/urfave/cli/v2"
)

// identityFlag is --identity, of the commands that fetch a release.
func identityFlag() cli.Flag {
	return &cli.StringSliceFlag{Name: "identity", Aliases: []string{"i"},
		Usage: "age identity `FILE` (age-keygen's, or an SSH private key) that reads an encrypted release (repeatable)"}
}

// identities reads the --identity files.
func identities(c *cli.Context) ([]relay.Identity, error) {
	var ids []relay.Identity
	for _, p := range c.StringSlice("identity") {
		got, err := relay.ReadIdentityFile(p)
		if err != nil {
			return nil, usageError{err}
		}
		ids = append(ids, got...)
	}
	return ids, nil
}

// recipientFlags are publish's --recipient and --recipients-file.
func recipientFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "recipient", Aliases: []string{"r"},
			Usage: "encrypt the release to `RECIPIENT`, an age public key (age1...) or an SSH public key (repeatable)"},
		&cli.StringSliceFlag{Name: "recipients-file", Aliases: []string{"R"},
			Usage: "encrypt the release to the recipients listed in `FILE`, one a line, # comments (repeatable)"},
	}
}

// recipients reads --recipient and --recipients-file.
func recipients(c *cli.Context) ([]relay.Recipient, error) {
	var rs []relay.Recipient
	for _, s := range c.StringSlice("recipient") {
		r, err := relay.ParseRecipient(s)
		if err != nil {
			return nil, usageError{fmt.Errorf("--recipient: %w", err)}
		}
		rs = append(rs, r)
	}
	for _, p := range c.StringSlice("recipients-file") {
		got, err := relay.ReadRecipientsFile(p)
		if err != nil {
			return nil, usageError{err}
		}
		rs = append(rs, got...)
	}
	return rs, nil
}
