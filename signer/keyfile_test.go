package signer

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func pass(s string) Passphrase {
	return func() ([]byte, error) { return []byte(s), nil }
}

func TestKeyFileRoundTrip(t *testing.T) {
	k := mustKey(t, 3)
	for _, tc := range []struct {
		name string
		pass string
	}{{"plain", ""}, {"sealed", "correct horse"}} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keys", "relay.key")
			if err := WriteKeyFile(path, k, []byte(tc.pass)); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
				t.Fatalf("key file mode %v, want 0600", fi.Mode().Perm())
			}
			data, _ := os.ReadFile(path)
			if bytes.Contains(data, []byte(hex.EncodeToString(k.Seed()))) {
				t.Fatal("seed in hex in the file")
			}
			if IsSealed(data) != (tc.pass != "") {
				t.Fatalf("IsSealed = %v", IsSealed(data))
			}
			got, err := ReadKeyFile(path, pass(tc.pass))
			if err != nil {
				t.Fatal(err)
			}
			if got.PublicKey() != k.PublicKey() {
				t.Fatal("read back a different key")
			}
			// Never overwrites.
			if err := WriteKeyFile(path, mustKey(t, 4), nil); !errors.Is(err, fs.ErrExist) {
				t.Fatalf("second write: %v, want ErrExist", err)
			}
			again, _ := ReadKeyFile(path, pass(tc.pass))
			if again.PublicKey() != k.PublicKey() {
				t.Fatal("existing key file was replaced")
			}
			entries, _ := os.ReadDir(filepath.Dir(path))
			if len(entries) != 1 {
				t.Fatalf("folder holds %d entries, want the key file alone", len(entries))
			}
		})
	}
}

func TestSealedKeyFile(t *testing.T) {
	k := mustKey(t, 5)
	data, err := MarshalKeyFile(k, []byte("s3cret"), bytes.NewReader(bytes.Repeat([]byte{1}, 64)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseKeyFile(data, nil); !errors.Is(err, ErrSealed) {
		t.Fatalf("no passphrase: %v, want ErrSealed", err)
	}
	if _, err := ParseKeyFile(data, pass("")); !errors.Is(err, ErrSealed) {
		t.Fatalf("empty passphrase: %v, want ErrSealed", err)
	}
	if _, err := ParseKeyFile(data, pass("S3cret")); !errors.Is(err, ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v, want ErrWrongPassphrase", err)
	}
	want := errors.New("no terminal")
	if _, err := ParseKeyFile(data, func() ([]byte, error) { return nil, want }); !errors.Is(err, want) {
		t.Fatalf("passphrase error not wrapped: %v", err)
	}
	// A flipped byte in the sealed seed fails authentication.
	bad := bytes.Replace(data, []byte("\n\n"), []byte("\n\nA"), 1)
	if _, err := ParseKeyFile(bad, pass("s3cret")); err == nil {
		t.Fatal("tampered sealed key opened")
	}
	// A hostile cost parameter is refused before any work.
	costly := bytes.Replace(data, []byte("logN=15"), []byte("logN=40"), 1)
	if _, err := ParseKeyFile(costly, pass("s3cret")); !errors.Is(err, ErrKeyFile) {
		t.Fatalf("logN=40: %v, want ErrKeyFile", err)
	}
}

func TestKeyFileLooseMode(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix permissions")
	}
	path := filepath.Join(t.TempDir(), "relay.key")
	if err := WriteKeyFile(path, mustKey(t, 6), nil); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []fs.FileMode{0o640, 0o604, 0o644, 0o660} {
		os.Chmod(path, mode)
		_, err := ReadKeyFile(path, nil)
		if !errors.Is(err, ErrLooseMode) || !strings.Contains(err.Error(), "0600") {
			t.Errorf("mode %04o: %v, want ErrLooseMode", mode, err)
		}
	}
	os.Chmod(path, 0o400)
	if _, err := ReadKeyFile(path, nil); err != nil {
		t.Errorf("mode 0400: %v", err)
	}
}

func TestForeignKeyFiles(t *testing.T) {
	k := mustKey(t, 8)
	for name, data := range map[string][]byte{
		"hex seed (pkarr)": []byte(hex.EncodeToString(k.Seed()) + "\n"),
		"raw seed":         k.Seed(),
	} {
		got, err := ParseKeyFile(data, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got.PublicKey() != k.PublicKey() {
			t.Fatalf("%s: wrong key", name)
		}
	}
	for name, data := range map[string][]byte{
		"empty":        nil,
		"text":         []byte("hello"),
		"other pem":    []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
		"short seed":   []byte("-----BEGIN RELAY PRIVATE KEY-----\nAAAA\n-----END RELAY PRIVATE KEY-----\n"),
		"wrong header": bytes.Replace(mustMarshal(t, k), []byte(k.PublicKey().String()), []byte(mustKey(t, 9).PublicKey().String()), 1),
	} {
		if _, err := ParseKeyFile(data, nil); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

func TestReadKeyFileErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadKeyFile(filepath.Join(dir, "missing"), nil); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := ReadKeyFile(dir, nil); !errors.Is(err, ErrKeyFile) {
		t.Errorf("a folder: %v", err)
	}
}

func mustMarshal(t *testing.T, k *PrivateKey) []byte {
	t.Helper()
	b, err := MarshalKeyFile(k, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestIsSealedFollowsTheBlockRead: IsSealed answers for the block that
// ParseKeyFile reads, not for text elsewhere in the file (found by
// FuzzParseKeyFile: a plain key after a line naming a sealed block).
func TestIsSealedFollowsTheBlockRead(t *testing.T) {
	k := mustKey(t, 6)
	plain, _ := MarshalKeyFile(k, nil, nil)
	sealed, _ := MarshalKeyFile(k, []byte("pw"), bytes.NewReader(make([]byte, 64)))
	for _, tc := range []struct {
		name   string
		data   []byte
		sealed bool
	}{
		{"plain after a sealed block's name", append([]byte("-----BEGIN RELAY SEALED PRIVATE KEY-----\n"), plain...), false},
		{"plain then sealed", append(append([]byte{}, plain...), sealed...), false},
		{"sealed then plain", append(append([]byte{}, sealed...), plain...), true},
	} {
		if got := IsSealed(tc.data); got != tc.sealed {
			t.Errorf("%s: IsSealed = %v, want %v", tc.name, got, tc.sealed)
		}
		_, err := ParseKeyFile(tc.data, nil)
		if sealedErr := errors.Is(err, ErrSealed); sealedErr != tc.sealed {
			t.Errorf("%s: ParseKeyFile without a passphrase: %v", tc.name, err)
		}
	}
}

func TestLooksLikeKeyFile(t *testing.T) {
	k, err := Generate(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := MarshalKeyFile(k, nil, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		data []byte
		want bool
	}{
		"plain":             {plain, true},
		"inside other text": {append([]byte("# config\nkey:\n"), plain...), true},
		"hex seed":          {[]byte(strings.Repeat("0f", 32) + "\n"), true},
		"sealed":            {[]byte("-----BEGIN RELAY SEALED PRIVATE KEY-----\nKDF: x\n\nAAAA\n-----END RELAY SEALED PRIVATE KEY-----\n"), true},
		"other pem":         {[]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), false},
		"text":              {[]byte("hello"), false},
		"hex of a sha-1":    {[]byte(strings.Repeat("0f", 20)), false},
		"32 raw bytes":      {make([]byte, 32), false},
	} {
		if got := LooksLikeKeyFile(c.data); got != c.want {
			t.Errorf("%s: %v, want %v", name, got, c.want)
		}
	}
}

// TestReadPublicKey: a sealed key file's public key is read without its
// passphrase; a file without a Public-Key header (a bare seed) is opened.
func TestReadPublicKey(t *testing.T) {
	k, err := Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sealed := filepath.Join(dir, "sealed.key")
	if err := WriteKeyFile(sealed, k, []byte("correct horse battery")); err != nil {
		t.Fatal(err)
	}
	noPass := func() ([]byte, error) { t.Error("asked for a passphrase"); return nil, nil }
	if pk, isSealed, err := ReadPublicKey(sealed, noPass); err != nil || pk != k.PublicKey() || !isSealed {
		t.Errorf("sealed: %s, %v, %v; want %s, true", pk, isSealed, err, k.PublicKey())
	}
	bare := filepath.Join(dir, "bare.key")
	if err := os.WriteFile(bare, []byte(hex.EncodeToString(k.Seed())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if pk, isSealed, err := ReadPublicKey(bare, noPass); err != nil || pk != k.PublicKey() || isSealed {
		t.Errorf("bare seed: %s, %v, %v; want %s, false", pk, isSealed, err, k.PublicKey())
	}
}
