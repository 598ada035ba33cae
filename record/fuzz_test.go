package record

import (
	"bytes"
	"errors"
	"testing"

	"github.com/relay-sh/relay/signer"
)

// FuzzPacket feeds arbitrary DNS packets to the parsers: they never panic,
// and a release record that parses, rebuilt into a new packet and signed,
// reads back as the same release and verifies.
func FuzzPacket(f *testing.F) {
	k := fixedKey(f, 1)
	f.Add(mustSetRelease(f, k.PublicKey(), nil, testRelease("stable", "1.0.0")))
	two := mustSetRelease(f, k.PublicKey(), nil, testRelease("stable", "1.0.0"))
	f.Add(mustSetRelease(f, k.PublicKey(), two, testRelease("beta", "2.0.0-rc.1")))
	f.Add([]byte{})
	f.Add(make([]byte, 12))
	f.Fuzz(func(t *testing.T, packet []byte) {
		Channels(k.PublicKey(), packet)
		r, err := FindRelease(k.PublicKey(), packet, "stable")
		if err != nil {
			return
		}
		rebuilt, err := SetRelease(k.PublicKey(), packet, r)
		if err != nil {
			// The rebuilt record may not fit where the original did (the
			// original may have used a shorter relative owner), or other
			// records may not repack; neither may panic.
			return
		}
		p, err := Sign(k, 1, rebuilt)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Check(p, k.PublicKey(), "stable", Accepted{}, Policy{Now: r.Expires.Add(-1), MaxFuture: 1 << 62})
		if err != nil {
			t.Fatalf("rebuilt packet does not verify: %v", err)
		}
		a, _ := r.TXT(k.PublicKey())
		b, _ := back.TXT(k.PublicKey())
		if a.String() != b.String() {
			t.Fatalf("release changed:\n%v\n%v", a, b)
		}
	})
}

// FuzzBody feeds arbitrary pkarr relay bodies: no panic, and a body that
// parses re-encodes to the same bytes.
func FuzzBody(f *testing.F) {
	k := fixedKey(f, 1)
	f.Add(mustSign(f, k, 1, mustSetRelease(f, k.PublicKey(), nil, testRelease("stable", "1.0.0"))).Body())
	f.Add(make([]byte, 72))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := ParseBody(k.PublicKey(), body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error without a sentinel: %v", err)
			}
			return
		}
		if !bytes.Equal(p.Body(), body) {
			t.Fatal("body does not re-encode to itself")
		}
	})
}

// FuzzManifest feeds arbitrary manifests: no panic, and one that decodes
// encodes canonically and decodes again to the same encoding.
func FuzzManifest(f *testing.F) {
	enc, err := testManifest(f).Encode()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc)
	f.Add([]byte(`{"format":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeManifest(b)
		if err != nil {
			return
		}
		a, err := m.Encode()
		if err != nil {
			t.Fatalf("decoded manifest does not encode: %v", err)
		}
		m2, err := DecodeManifest(a)
		if err != nil {
			t.Fatalf("canonical encoding does not decode: %v", err)
		}
		c, _ := m2.Encode()
		if !bytes.Equal(a, c) {
			t.Fatal("canonical encoding is not stable")
		}
	})
}

// FuzzTXT feeds arbitrary character-strings as a channel's record.
func FuzzTXT(f *testing.F) {
	f.Add("v=1.0.0", "bt=0123456789abcdef0123456789abcdef01234567", "n=5", "exp=99")
	f.Fuzz(func(t *testing.T, a, b, c, d string) {
		r, err := parseTXT("stable", []string{a, b, c, d})
		if err != nil {
			return
		}
		if _, err := r.TXT(fixedKey(t, 1).PublicKey()); err != nil {
			t.Fatalf("parsed record does not build: %v", err)
		}
	})
}

// FuzzDelegation feeds arbitrary DNS packets to the delegation parser: it
// never panics, and a delegation that parses, rebuilt into a new packet,
// reads back as the same delegation.
func FuzzDelegation(f *testing.F) {
	root := fixedKey(f, 1).PublicKey()
	d := testDelegation(f, 2, 2, 3, 4)
	d.Keys[0].Channels = []string{"beta"}
	d.Revoked = []signer.PublicKey{fixedKey(f, 5).PublicKey()}
	f.Add(mustDelegate(f, root, d))
	f.Add(mustDelegate(f, root, Delegation{Expires: fixedNow, Next: fixedKey(f, 6).PublicKey()}))
	f.Add(mustSetRelease(f, root, nil, testRelease("stable", "1.0.0")))
	f.Add(make([]byte, 12))
	f.Fuzz(func(t *testing.T, packet []byte) {
		d, ok, err := FindDelegation(root, packet)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error without a sentinel: %v", err)
			}
			return
		}
		if !ok {
			return
		}
		rebuilt, err := SetDelegation(root, packet, d)
		if err != nil {
			return
		}
		back, ok, err := FindDelegation(root, rebuilt)
		if err != nil || !ok {
			t.Fatalf("rebuilt delegation does not parse: %v", err)
		}
		a, _ := d.TXT(root)
		b, _ := back.TXT(root)
		if a.String() != b.String() {
			t.Fatalf("delegation changed:\n%v\n%v", a, b)
		}
	})
}
