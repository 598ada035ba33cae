package main

import (
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/relay-sh/relay/record"
	"github.com/urfave/cli/v2"
)

// Defaults shared by the commands that sign records.
const (
	defaultChannel = "stable"
	defaultExpires = 30 * 24 * time.Hour
)

func channelFlag() cli.Flag {
	return &cli.StringFlag{Name: "channel", Aliases: []string{"c"}, Value: defaultChannel, Usage: "release channel, `NAME` ([a-z0-9-]{1,63})", EnvVars: []string{"RELAY_CHANNEL"}}
}

func recordCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "record",
		Usage: "sign a release record and print the signed packet, without publishing it",
		Description: "Builds the DNS packet of one channel's release record, signs it as a BEP 44 item and\n" +
			"prints it: the pkarr relay body in hex, or every field with --json. Nothing is sent.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "key", Usage: "provider key `FILE`", EnvVars: []string{"RELAY_KEY"}},
			&cli.StringFlag{Name: "version", Usage: "release version `V` (semantic versioning)"},
			channelFlag(),
			&cli.StringFlag{Name: "expires", Value: "30d", Usage: "how long the record stays fresh, `DURATION` (e.g. 720h, 30d)"},
			&cli.StringFlag{Name: "infohash", Usage: "the bundle's BitTorrent v1 infohash, `HEX` (40)"},
			&cli.StringFlag{Name: "manifest-sha256", Usage: "SHA-256 of the bundle's relay.json, `HEX` (64)"},
			&cli.Int64Flag{Name: "size", Usage: "the bundle's total size in `BYTES`"},
			&cli.StringSliceFlag{Name: "web-seed", Usage: "HTTP(S) `URL` serving the same files (repeatable)"},
			&cli.Int64Flag{Name: "seq", Usage: "BEP 44 seq, `MICROSECONDS` since the Unix epoch (default: now)"},
			&cli.StringFlag{Name: "rollout", Value: "100", Usage: "the `PERCENT` of machines that take the release now, 1 to 100 (docs/spec/rollout.md)"},
			&cli.BoolFlag{Name: "critical", Usage: "mark the release critical (a security fix no machine holds back)"},
		},
		Action: func(c *cli.Context) error {
			if err := requireFlags(c, "version", "infohash", "manifest-sha256", "size"); err != nil {
				return err
			}
			// The record's expiry counts from the time of signing.
			seq := c.Int64("seq")
			if !c.IsSet("seq") {
				seq = record.NextSeq(time.Now(), 0)
			}
			r, err := releaseFromFlags(c, time.UnixMicro(seq))
			if err != nil {
				return err
			}
			ih, err := record.ParseInfohash(c.String("infohash"))
			if err != nil {
				return usageError{fmt.Errorf("--infohash: %w", err)}
			}
			m, err := record.ParseDigest(c.String("manifest-sha256"))
			if err != nil {
				return usageError{fmt.Errorf("--manifest-sha256: %w", err)}
			}
			if r.Rollout, err = rolloutFlag(c); err != nil {
				return err
			}
			r.Critical = c.Bool("critical")
			r.Infohash, r.Manifest, r.Size = ih, m, c.Int64("size")
			if err := r.Validate(); err != nil {
				return usageError{err}
			}
			path, err := keyPath(c.String("key"))
			if err != nil {
				return err
			}
			k, err := e.loadKey(path)
			if err != nil {
				return err
			}
			packet, err := record.SetRelease(k.PublicKey(), nil, r)
			if err != nil {
				return usageError{err}
			}
			p, err := record.Sign(k, seq, packet)
			if err != nil {
				return err
			}
			return e.result(signedJSON(p, r), func(w io.Writer) {
				fmt.Fprintln(w, hex.EncodeToString(p.Body()))
			})
		},
	}
}

// releaseFromFlags reads --version, --channel, --expires and --web-seed.
func releaseFromFlags(c *cli.Context, now time.Time) (record.Release, error) {
	var r record.Release
	v, err := record.ParseVersion(c.String("version"))
	if err != nil {
		return r, usageError{fmt.Errorf("--version: %w", err)}
	}
	if err := record.ValidChannel(c.String("channel")); err != nil {
		return r, usageError{fmt.Errorf("--channel: %w", err)}
	}
	d, err := durationFlag(c, "expires")
	if err != nil {
		return r, err
	}
	return record.Release{
		Channel:  c.String("channel"),
		Version:  v,
		Expires:  now.Add(d).UTC().Truncate(time.Second),
		WebSeeds: c.StringSlice("web-seed"),
	}, nil
}

// durationFlag reads a positive duration flag.
func durationFlag(c *cli.Context, name string) (time.Duration, error) {
	d, err := parseDuration(c.String(name))
	if err != nil || d <= 0 {
		return 0, usagef("--%s %q is not a positive duration like 90s, 720h or 30d", name, c.String(name))
	}
	return d, nil
}

// Lower bounds of --interval: each check asks DHT nodes for a record.
// The public DHT's nodes serve everyone, so relay asks them at most twice
// a minute; a private network (--bootstrap) is the user's own to load,
// and its tests and demos check often.
const (
	minPublicInterval  = 30 * time.Second
	minPrivateInterval = 100 * time.Millisecond
)

// intervalFlag reads --interval, refusing one shorter than the network's
// lower bound.
func (e *env) intervalFlag(c *cli.Context) (time.Duration, error) {
	d, err := durationFlag(c, "interval")
	if err != nil {
		return 0, err
	}
	switch {
	case len(e.bootstrap) == 0 && d < minPublicInterval:
		return 0, withHint(usagef("--interval %s is too short for the public DHT: at least %s", d, minPublicInterval),
			"its nodes serve everyone; a private network (--bootstrap) allows down to %s", minPrivateInterval)
	case d < minPrivateInterval:
		return 0, usagef("--interval %s is too short: at least %s", d, minPrivateInterval)
	}
	return d, nil
}

// parseDuration is time.ParseDuration that also takes days ("30d").
func parseDuration(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseFloat(n, 64)
		if err != nil {
			return 0, err
		}
		return time.Duration(days * float64(24*time.Hour)), nil
	}
	return time.ParseDuration(s)
}

// releaseJSON is a release record in relay's JSON output.
type releaseJSON struct {
	Channel  string          `json:"channel"`
	Version  record.Version  `json:"version"`
	Infohash record.Infohash `json:"infohash"`
	Manifest record.Digest   `json:"manifest_sha256"`
	Size     int64           `json:"size"`
	Expires  time.Time       `json:"expires"`
	WebSeeds []string        `json:"web_seeds,omitempty"`
	// Rollout and Critical are docs/spec/rollout.md's fields: the
	// percentage of machines that take the release (100: every one).
	Rollout  int  `json:"rollout"`
	Critical bool `json:"critical,omitempty"`
}

func toReleaseJSON(r record.Release) releaseJSON {
	return releaseJSON{r.Channel, r.Version, r.Infohash, r.Manifest, r.Size, r.Expires, r.WebSeeds, everyone(r.Rollout), r.Critical}
}

// signedPacketJSON is a signed packet with every field, for inspection.
type signedPacketJSON struct {
	Key       string      `json:"public_key"`
	Target    string      `json:"target"`
	Seq       int64       `json:"seq"`
	Time      time.Time   `json:"time"`
	Signature string      `json:"signature"`
	Packet    string      `json:"packet"`
	Size      int         `json:"packet_size"`
	Body      string      `json:"relay_body"`
	Release   releaseJSON `json:"release"`
}

func signedJSON(p *record.SignedPacket, r record.Release) signedPacketJSON {
	t := p.Target()
	return signedPacketJSON{
		Key:       p.Key.String(),
		Target:    hex.EncodeToString(t[:]),
		Seq:       p.Seq,
		Time:      p.Time(),
		Signature: hex.EncodeToString(p.Sig[:]),
		Packet:    hex.EncodeToString(p.Packet),
		Size:      len(p.Packet),
		Body:      hex.EncodeToString(p.Body()),
		Release:   toReleaseJSON(r),
	}
}
