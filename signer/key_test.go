package signer

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

type z32Vector struct {
	Source string `json:"source"`
	Z32    string `json:"z32"`
	Hex    string `json:"hex"`
}

func TestPublicKeyVectors(t *testing.T) {
	data, err := os.ReadFile("testdata/z32.json")
	if err != nil {
		t.Fatal(err)
	}
	var vs []z32Vector
	if err := json.Unmarshal(data, &vs); err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		t.Run(v.Source, func(t *testing.T) {
			raw, _ := hex.DecodeString(v.Hex)
			var want PublicKey
			copy(want[:], raw)
			if v.Z32 == "" {
				// Round trip only.
				v.Z32 = want.String()
			}
			for _, in := range []string{v.Z32, "pk:" + v.Z32, " " + v.Z32 + "\n"} {
				got, err := ParsePublicKey(in)
				if err != nil {
					t.Fatalf("ParsePublicKey(%q): %v", in, err)
				}
				if got != want {
					t.Fatalf("ParsePublicKey(%q) = %x, want %s", in, got[:], v.Hex)
				}
			}
			if got := want.String(); got != v.Z32 {
				t.Fatalf("String() = %s, want %s", got, v.Z32)
			}
		})
	}
}

func TestPKarrVectorBytes(t *testing.T) {
	// docs/spec/record.md states the vector as bytes beginning 01 b4 67 a3 and ending 26 c5.
	k, err := ParsePublicKey("yg4gxe7z1r7mr6orids9fh95y7gxhdsxjqi6nngsxxtakqaxr5no")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(k[:], []byte{0x01, 0xb4, 0x67, 0xa3}) || !bytes.HasSuffix(k[:], []byte{0x26, 0xc5}) {
		t.Fatalf("key bytes %x", k[:])
	}
}

func TestParsePublicKeyRefuses(t *testing.T) {
	good := "yg4gxe7z1r7mr6orids9fh95y7gxhdsxjqi6nngsxxtakqaxr5no"
	for _, in := range []string{
		"",
		good[:51],
		good + "y",
		strings.Replace(good, "y", "l", 1), // l is not in the alphabet
		strings.ToUpper(good),
		"pk:" + good[:51],
		good[:51] + "x", // last character carries non-zero padding bits
		"0123456789abcdef0123456789abcdef0123456789abcdef0123",
	} {
		if _, err := ParsePublicKey(in); !errors.Is(err, ErrMalformedKey) {
			t.Errorf("ParsePublicKey(%q) = %v, want ErrMalformedKey", in, err)
		}
	}
}

func TestTextRoundTrip(t *testing.T) {
	k := mustKey(t, 7).PublicKey()
	b, err := json.Marshal(struct{ K PublicKey }{k})
	if err != nil {
		t.Fatal(err)
	}
	var back struct{ K PublicKey }
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !back.K.Equal(k) {
		t.Fatalf("round trip %s != %s", back.K, k)
	}
	if err := json.Unmarshal([]byte(`{"K":"nope"}`), &back); !errors.Is(err, ErrMalformedKey) {
		t.Fatalf("unmarshal of a bad key: %v", err)
	}
}

func TestSigner(t *testing.T) {
	k := mustKey(t, 1)
	var s crypto.Signer = k
	msg := []byte("relay")
	sig, err := s.Sign(nil, msg, crypto.Hash(0))
	if err != nil {
		t.Fatal(err)
	}
	if !ed25519.Verify(s.Public().(ed25519.PublicKey), msg, sig) {
		t.Fatal("crypto.Signer signature does not verify")
	}
	if !k.PublicKey().Verify(msg, sig) || k.PublicKey().Verify([]byte("relaY"), sig) {
		t.Fatal("PublicKey.Verify is wrong")
	}
	if !bytes.Equal(k.PublicKey().Ed25519(), s.Public().(ed25519.PublicKey)) {
		t.Fatal("Ed25519() differs from Public()")
	}
}

func TestGenerateDeterministic(t *testing.T) {
	a, err := Generate(bytes.NewReader(bytes.Repeat([]byte{9}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Generate(bytes.NewReader(bytes.Repeat([]byte{9}, 32)))
	if a.PublicKey() != b.PublicKey() {
		t.Fatal("same random source gave different keys")
	}
	if _, err := Generate(bytes.NewReader(nil)); err == nil {
		t.Fatal("empty random source gave a key")
	}
	if _, err := NewPrivateKey(make([]byte, 31)); err == nil {
		t.Fatal("31-byte seed accepted")
	}
}

// mustKey returns a key made from a seed of 32 bytes of b.
func mustKey(t testing.TB, b byte) *PrivateKey {
	t.Helper()
	k, err := NewPrivateKey(bytes.Repeat([]byte{b}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}
