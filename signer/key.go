// Package signer holds relay's provider keys: ed25519 key pairs, the
// z-base-32 text form of a public key that pkarr uses, and key files.
//
// It never touches the network, never prints and never reads the
// environment: callers hand it a random source and a passphrase source.
package signer

import (
	"crypto"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/tv42/zbase32"
)

// PublicKeyLen is the length of a public key's z-base-32 text form.
const PublicKeyLen = 52

// ErrMalformedKey is returned for a public key text that is not 52
// z-base-32 characters.
var ErrMalformedKey = errors.New("malformed public key")

// PublicKey is a provider's ed25519 public key. Its text form is the
// 52-character z-base-32 encoding that pkarr uses.
type PublicKey [ed25519.PublicKeySize]byte

// ParsePublicKey parses the z-base-32 form of a public key. A "pk:" prefix
// and surrounding white space are accepted.
func ParsePublicKey(s string) (PublicKey, error) {
	var k PublicKey
	t := strings.TrimSpace(s)
	t = strings.TrimPrefix(t, "pk:")
	if len(t) != PublicKeyLen {
		return k, fmt.Errorf("%w: %q has %d characters, want %d z-base-32 characters", ErrMalformedKey, short(s), len(t), PublicKeyLen)
	}
	b, err := zbase32.DecodeBitsString(t, 8*ed25519.PublicKeySize)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return k, fmt.Errorf("%w: %q is not z-base-32", ErrMalformedKey, short(s))
	}
	copy(k[:], b)
	// z-base-32 carries 260 bits for 256: the last character's low bits
	// must be zero, so that every key has exactly one text form.
	if k.String() != t {
		return PublicKey{}, fmt.Errorf("%w: %q is not a canonical key", ErrMalformedKey, short(s))
	}
	return k, nil
}

func short(s string) string {
	if len(s) > 64 {
		return s[:61] + "..."
	}
	return s
}

// String returns the 52-character z-base-32 form of k.
func (k PublicKey) String() string {
	return zbase32.EncodeToString(k[:])
}

// MarshalText implements encoding.TextMarshaler.
func (k PublicKey) MarshalText() ([]byte, error) {
	return []byte(k.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (k *PublicKey) UnmarshalText(text []byte) error {
	p, err := ParsePublicKey(string(text))
	if err != nil {
		return err
	}
	*k = p
	return nil
}

// Equal reports whether k and o are the same key.
func (k PublicKey) Equal(o PublicKey) bool { return k == o }

// IsZero reports whether k is the zero value, which is no key.
func (k PublicKey) IsZero() bool { return k == PublicKey{} }

// Ed25519 returns k as a standard library public key.
func (k PublicKey) Ed25519() ed25519.PublicKey {
	b := make([]byte, ed25519.PublicKeySize)
	copy(b, k[:])
	return b
}

// Verify reports whether sig is k's valid ed25519 signature of msg.
func (k PublicKey) Verify(msg, sig []byte) bool {
	return len(sig) == ed25519.SignatureSize && ed25519.Verify(k[:], msg, sig)
}

// PrivateKey is a provider's ed25519 private key. It satisfies
// crypto.Signer.
type PrivateKey struct {
	key ed25519.PrivateKey
}

var _ crypto.Signer = (*PrivateKey)(nil)

// Generate makes a new private key from rand (crypto/rand.Reader when nil).
func Generate(rand io.Reader) (*PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand)
	if err != nil {
		return nil, fmt.Errorf("failed to generate key: %w", err)
	}
	return &PrivateKey{key: priv}, nil
}

// NewPrivateKey returns the private key of a 32-byte ed25519 seed.
func NewPrivateKey(seed []byte) (*PrivateKey, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("key seed has %d bytes, want %d", len(seed), ed25519.SeedSize)
	}
	return &PrivateKey{key: ed25519.NewKeyFromSeed(seed)}, nil
}

// Seed returns the 32-byte seed k was made from.
func (k *PrivateKey) Seed() []byte { return k.key.Seed() }

// PublicKey returns k's public half.
func (k *PrivateKey) PublicKey() PublicKey {
	var p PublicKey
	copy(p[:], k.key[ed25519.SeedSize:])
	return p
}

// Public implements crypto.Signer; it returns an ed25519.PublicKey.
func (k *PrivateKey) Public() crypto.PublicKey { return k.key.Public() }

// Sign implements crypto.Signer: a plain ed25519 signature of msg (opts
// must be crypto.Hash(0)).
func (k *PrivateKey) Sign(rand io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	return k.key.Sign(rand, msg, opts)
}

// SignMessage returns the ed25519 signature of msg.
func (k *PrivateKey) SignMessage(msg []byte) []byte {
	return ed25519.Sign(k.key, msg)
}
