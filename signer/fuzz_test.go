package signer

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzParseKeyFile: no input panics; a key that parses writes back to a
// file that parses to the same key; a sealed file opened without a
// passphrase never yields a key.
func FuzzParseKeyFile(f *testing.F) {
	k, err := NewPrivateKey(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		f.Fatal(err)
	}
	plain, _ := MarshalKeyFile(k, nil, nil)
	sealed, _ := MarshalKeyFile(k, []byte("pass"), bytes.NewReader(make([]byte, 64)))
	f.Add(plain)
	f.Add(sealed)
	f.Add([]byte(strings.Repeat("ab", 32) + "\n"))
	f.Add(bytes.Repeat([]byte{1}, 32))
	f.Add(bytes.Replace(sealed, []byte("logN=15"), []byte("logN=22"), 1))
	f.Add([]byte("-----BEGIN RELAY PRIVATE KEY-----\n\n-----END RELAY PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := ParseKeyFile(data, nil)
		if err != nil {
			if got != nil {
				t.Fatal("a key and an error")
			}
			return
		}
		if IsSealed(data) {
			t.Fatal("a sealed file opened without a passphrase")
		}
		again, err := MarshalKeyFile(got, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseKeyFile(again, nil)
		if err != nil || back.PublicKey() != got.PublicKey() {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// FuzzParsePublicKey: no input panics, and a key that parses prints as a
// text that parses to the same key.
func FuzzParsePublicKey(f *testing.F) {
	f.Add("yg4gxe7z1r7mr6orids9fh95y7gxhdsxjqi6nngsxxtakqaxr5no")
	f.Add("pk:yg4gxe7z1r7mr6orids9fh95y7gxhdsxjqi6nngsxxtakqaxr5no")
	f.Add("YG4GXE7Z1R7MR6ORIDS9FH95Y7GXHDSXJQI6NNGSXXTAKQAXR5NO")
	f.Add("yg4gxe7z1r7mr6orids9fh95y7gxhdsxjqi6nngsxxtakqaxr5n9")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParsePublicKey(s)
		if err != nil {
			return
		}
		back, err := ParsePublicKey(k.String())
		if err != nil || back != k {
			t.Fatalf("%q: round trip: %v", s, err)
		}
	})
}

// TestSealedKeyFileBoundsMemory: a sealed file asking scrypt for more than
// a few hundred megabytes is refused before any is spent.
func TestSealedKeyFileBoundsMemory(t *testing.T) {
	k, _ := NewPrivateKey(bytes.Repeat([]byte{7}, 32))
	sealed, err := MarshalKeyFile(k, []byte("pass"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, kdf := range []string{"logN=22 r=32 p=1", "logN=22 r=8 p=1", "logN=20 r=32 p=1"} {
		data := bytes.Replace(sealed, []byte("logN=15 r=8 p=1"), []byte(kdf), 1)
		_, err := ParseKeyFile(data, func() ([]byte, error) { return []byte("pass"), nil })
		if !errors.Is(err, ErrKeyFile) || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("%s: %v", kdf, err)
		}
	}
}
