package main

import (
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/urfave/cli/v2"
)

// defaultDelegationExpires is how long a delegation holds unless
// --expires says otherwise: long enough for an offline ceremony a few
// times a year, short enough that a replayed old one dies.
const defaultDelegationExpires = "90d"

func delegateCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "delegate",
		Usage: "sign, with an offline root key, which keys sign its releases; print the signed packet",
		Description: "Runs on the machine that holds the root key, with no network. Prints the root's signed\n" +
			"packet as one line, `<root key> <pkarr relay body in hex>`: carry it to any online machine\n" +
			"and run `relay store FILE` there (no key needed). --from starts from an earlier delegation\n" +
			"(its keys, threshold and revocations; the new one is signed with a higher seq); --revoke\n" +
			"moves a key from the named to the revoked; --next names a successor root (rotation).\n" +
			"docs/spec/keys.md describes the record.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "root", Usage: "the root key `FILE` (the key users follow)", EnvVars: []string{"RELAY_ROOT_KEY"}},
			&cli.StringFlag{Name: "from", Usage: "an earlier delegation `FILE` (as this command printed it) to start from"},
			&cli.StringSliceFlag{Name: "release-key", Usage: "a release key, `KEY[:CHANNEL,...]` (repeatable); without channels it signs every channel"},
			&cli.StringSliceFlag{Name: "drop", Usage: "stop naming release key `KEY`, without revoking it (a retired key)"},
			&cli.StringSliceFlag{Name: "revoke", Usage: "revoke `KEY`: what it signs is refused from now on (repeatable)"},
			&cli.IntFlag{Name: "threshold", Aliases: []string{"t"}, Usage: "how many release keys must sign the same release, `K` (default: the --from one, else 1)"},
			&cli.StringFlag{Name: "next", Usage: "the successor root's public `KEY`: users move to it"},
			&cli.StringFlag{Name: "expires", Value: defaultDelegationExpires, Usage: "how long the delegation holds, `DURATION`; sign a new one before it ends"},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "write the signed packet to `FILE` (mode 0644) instead of stdout"},
		},
		Action: func(c *cli.Context) error {
			if err := requireFlags(c, "root"); err != nil {
				return err
			}
			expires, err := durationFlag(c, "expires")
			if err != nil {
				return err
			}
			root, err := e.loadKey(c.String("root"))
			if err != nil {
				return err
			}
			var d record.Delegation
			var prevSeq int64
			if f := c.String("from"); f != "" {
				prev, err := readSignedFile(f)
				if err != nil {
					return err
				}
				if prev.Key != root.PublicKey() {
					return usagef("--from %s is the delegation of %s, not of this root %s", f, prev.Key, root.PublicKey())
				}
				var ok bool
				if d, ok, err = record.FindDelegation(prev.Key, prev.Packet); err != nil || !ok {
					return usagef("--from %s holds no delegation: %v", f, err)
				}
				prevSeq = prev.Seq
			}
			if err := editDelegation(c, &d); err != nil {
				return err
			}
			now := time.Now()
			d.Expires = now.Add(expires).UTC().Truncate(time.Second)
			if err := d.Validate(); err != nil {
				return usageError{err}
			}
			packet, err := record.SetDelegation(root.PublicKey(), nil, d)
			if err != nil {
				return usageError{err}
			}
			p, err := record.Sign(root, record.NextSeq(now, prevSeq), packet)
			if err != nil {
				return err
			}
			line := p.Key.String() + " " + hex.EncodeToString(p.Body()) + "\n"
			if out := c.String("out"); out != "" {
				if err := os.WriteFile(out, []byte(line), 0o644); err != nil {
					return err
				}
				e.note("wrote %s: %s", out, describeDelegation(d))
				return nil
			}
			e.note("signed: %s", describeDelegation(d))
			_, err = io.WriteString(e.stdout, line)
			return err
		},
	}
}

// editDelegation applies --release-key, --drop, --revoke, --threshold and
// --next to d.
func editDelegation(c *cli.Context, d *record.Delegation) error {
	for _, s := range c.StringSlice("release-key") {
		ks, chans, restricted := strings.Cut(s, ":")
		k, err := signer.ParsePublicKey(ks)
		if err != nil {
			return usageError{fmt.Errorf("--release-key %q: %w", s, err)}
		}
		dk := record.Delegate{Key: k}
		if restricted {
			dk.Channels = strings.Split(chans, ",")
		}
		d.Keys = slices.DeleteFunc(d.Keys, func(o record.Delegate) bool { return o.Key == k })
		d.Keys = append(d.Keys, dk)
	}
	for _, s := range c.StringSlice("drop") {
		k, err := signer.ParsePublicKey(s)
		if err != nil {
			return usageError{fmt.Errorf("--drop %q: %w", s, err)}
		}
		d.Keys = slices.DeleteFunc(d.Keys, func(o record.Delegate) bool { return o.Key == k })
	}
	for _, s := range c.StringSlice("revoke") {
		k, err := signer.ParsePublicKey(s)
		if err != nil {
			return usageError{fmt.Errorf("--revoke %q: %w", s, err)}
		}
		d.Keys = slices.DeleteFunc(d.Keys, func(o record.Delegate) bool { return o.Key == k })
		if !d.IsRevoked(k) {
			d.Revoked = append(d.Revoked, k)
		}
	}
	switch {
	case c.IsSet("threshold"):
		d.Threshold = c.Int("threshold")
	case d.Threshold == 0 && len(d.Keys) > 0:
		d.Threshold = 1
	case d.Threshold > len(d.Keys):
		return usagef("the threshold %d is above the %s left: give --threshold", d.Threshold, count(len(d.Keys), "release key"))
	}
	if s := c.String("next"); s != "" {
		k, err := signer.ParsePublicKey(s)
		if err != nil {
			return usageError{fmt.Errorf("--next %q: %w", s, err)}
		}
		d.Next = k
	}
	return nil
}

func describeDelegation(d record.Delegation) string {
	s := fmt.Sprintf("%d of %s, %d revoked, until %s", d.Threshold, count(len(d.Keys), "release key"), len(d.Revoked), d.Expires.Format(time.RFC3339))
	if !d.Next.IsZero() {
		s += ", successor root " + d.Next.String()
	}
	return s
}

// readSignedFile reads a signed packet as `relay delegate` prints it:
// `<key> <hex body>`, and verifies it.
func readSignedFile(path string) (*record.SignedPacket, error) {
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(io.LimitReader(os.Stdin, 1<<16))
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, err
	}
	return parseSigned(string(b))
}

func parseSigned(s string) (*record.SignedPacket, error) {
	fields := strings.Fields(s)
	if len(fields) != 2 {
		return nil, usagef("a signed packet is `<key> <hex body>` on one line, as relay delegate prints it")
	}
	k, err := signer.ParsePublicKey(fields[0])
	if err != nil {
		return nil, usageError{err}
	}
	body, err := hex.DecodeString(fields[1])
	if err != nil {
		return nil, usagef("the packet body is not hex: %v", err)
	}
	return record.ParseBody(k, body)
}

func storeCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "store",
		Usage:     "store a signed packet (a root's delegation) in the DHT, unchanged; no key needed",
		ArgsUsage: "FILE",
		Description: "Reads `<key> <hex body>` as relay delegate prints it (FILE, or - for stdin), verifies the\n" +
			"signature, and stores the packet in the DHT (and through --relays) as it is: a root key\n" +
			"stays offline while any machine publishes what it signed.",
		Action: func(c *cli.Context) error {
			p, err := readSignedFile(c.Args().First())
			if err != nil {
				return err
			}
			cl, err := e.open(c, true)
			if err != nil {
				return err
			}
			defer cl.Close()
			n, err := cl.Store(c.Context, p)
			if err != nil {
				return err
			}
			return e.result(struct {
				Key    signer.PublicKey `json:"public_key"`
				Seq    int64            `json:"seq"`
				Stored int              `json:"stored"`
			}{p.Key, p.Seq, n}, func(w io.Writer) {
				fmt.Fprintf(w, "stored %s seq %d on %s\n", p.Key, p.Seq, count(n, "DHT node"))
			})
		},
	}
}

func cosignCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "cosign",
		Usage:     "add a release key's signature to a release another key of ROOT's delegation signed",
		ArgsUsage: "ROOT",
		Description: "Finds VERSION of the channel as signed by another release key that ROOT's delegation\n" +
			"names, and signs the same record (bundle, manifest, size) with --key into that key's own\n" +
			"packet: with a threshold of k, a release counts once k keys signed it. Sign only what you\n" +
			"checked: a reproducible build of the same sources gives the same manifest sha-256.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "key", Usage: "release key `FILE`", EnvVars: []string{"RELAY_KEY"}},
			&cli.StringFlag{Name: "version", Usage: "the release `V` to sign"},
			&cli.StringFlag{Name: "manifest-sha256", Usage: "sign only if the record's manifest is `HEX` (what your own build gave)"},
			channelFlag(),
			&cli.StringFlag{Name: "expires", Value: "30d", Usage: "how long the record stays fresh, `DURATION`"},
		},
		Action: func(c *cli.Context) error {
			if err := requireFlags(c, "key", "version"); err != nil {
				return err
			}
			root, err := signer.ParsePublicKey(c.Args().First())
			if err != nil {
				return usageError{err}
			}
			v, err := record.ParseVersion(c.String("version"))
			if err != nil {
				return usageError{fmt.Errorf("--version: %w", err)}
			}
			var want record.Digest
			if s := c.String("manifest-sha256"); s != "" {
				if want, err = record.ParseDigest(s); err != nil {
					return usageError{fmt.Errorf("--manifest-sha256: %w", err)}
				}
			}
			expires, err := durationFlag(c, "expires")
			if err != nil {
				return err
			}
			key, err := e.loadKey(c.String("key"))
			if err != nil {
				return err
			}
			cl, err := e.open(c, true)
			if err != nil {
				return err
			}
			defer cl.Close()
			p, r, err := cl.Cosign(c.Context, relay.CosignOptions{Key: key, Root: root, Channel: c.String("channel"),
				Version: v, Expires: expires, Manifest: want})
			if err != nil {
				return err
			}
			out := toReleaseJSON(r)
			return e.result(struct {
				Key string `json:"public_key"`
				Seq int64  `json:"seq"`
				releaseJSON
			}{key.PublicKey().String(), p.Seq, out}, func(w io.Writer) {
				fmt.Fprintf(w, "signed %s %s (manifest %s) with %s\n", r.Channel, r.Version, r.Manifest, key.PublicKey())
			})
		},
	}
}
