package record

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/Masterminds/semver/v3"
	"github.com/relay-sh/relay/signer"
)

// Infohash is a BitTorrent v1 infohash. Its text form is 40 lowercase hex
// characters.
type Infohash [20]byte

// ParseInfohash parses 40 hex characters (either case).
func ParseInfohash(s string) (Infohash, error) {
	var h Infohash
	if err := parseHex(h[:], s, "infohash"); err != nil {
		return h, err
	}
	return h, nil
}

func (h Infohash) String() string                { return hex.EncodeToString(h[:]) }
func (h Infohash) MarshalText() ([]byte, error)  { return []byte(h.String()), nil }
func (h *Infohash) UnmarshalText(b []byte) error { return parseHex(h[:], string(b), "infohash") }

// IsZero reports whether h is the zero value.
func (h Infohash) IsZero() bool { return h == Infohash{} }

// Digest is a SHA-256 digest. Its text form is 64 lowercase hex characters.
type Digest [32]byte

// ParseDigest parses 64 hex characters (either case).
func ParseDigest(s string) (Digest, error) {
	var d Digest
	if err := parseHex(d[:], s, "sha-256"); err != nil {
		return d, err
	}
	return d, nil
}

func (d Digest) String() string                { return hex.EncodeToString(d[:]) }
func (d Digest) MarshalText() ([]byte, error)  { return []byte(d.String()), nil }
func (d *Digest) UnmarshalText(b []byte) error { return parseHex(d[:], string(b), "sha-256") }

// IsZero reports whether d is the zero value.
func (d Digest) IsZero() bool { return d == Digest{} }

func parseHex(dst []byte, s, what string) error {
	if len(s) != 2*len(dst) {
		return fmt.Errorf("%w: %s %q has %d characters, want %d hex", ErrMalformed, what, clip(s), len(s), 2*len(dst))
	}
	if _, err := hex.Decode(dst, []byte(s)); err != nil {
		return fmt.Errorf("%w: %s %q is not hex", ErrMalformed, what, clip(s))
	}
	return nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

// Version is a semantic version (semver.org 2.0), without a "v" prefix.
// The zero Version is no version and sorts below every other.
type Version struct {
	v *semver.Version
}

// ParseVersion parses a strict semantic version such as 1.4.2 or
// 2.0.0-rc.1. A leading "v" is accepted and dropped.
func ParseVersion(s string) (Version, error) {
	t := strings.TrimPrefix(s, "v")
	v, err := semver.StrictNewVersion(t)
	if err != nil {
		return Version{}, fmt.Errorf("%w: version %q is not semantic versioning (like 1.4.2 or 2.0.0-rc.1): %v", ErrMalformed, clip(s), err)
	}
	return Version{v: v}, nil
}

// MustParseVersion is ParseVersion for constants; it panics on error.
func MustParseVersion(s string) Version {
	v, err := ParseVersion(s)
	if err != nil {
		panic(err)
	}
	return v
}

func (v Version) String() string {
	if v.v == nil {
		return ""
	}
	return v.v.String()
}

// IsZero reports whether v is no version.
func (v Version) IsZero() bool { return v.v == nil }

// Compare returns -1, 0 or +1 as v sorts before, with or after o, by
// semantic versioning precedence (build metadata is ignored).
func (v Version) Compare(o Version) int {
	switch {
	case v.v == nil && o.v == nil:
		return 0
	case v.v == nil:
		return -1
	case o.v == nil:
		return 1
	}
	return v.v.Compare(o.v)
}

// Less reports whether v sorts before o.
func (v Version) Less(o Version) bool { return v.Compare(o) < 0 }

func (v Version) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

func (v *Version) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*v = Version{}
		return nil
	}
	p, err := ParseVersion(string(b))
	if err != nil {
		return err
	}
	*v = p
	return nil
}

// Target returns the BEP 44 target of a key's mutable item with no salt:
// SHA-1 of the public key.
func Target(k signer.PublicKey) [20]byte {
	return sha1.Sum(k[:])
}
