package relay

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/transfer"
)

// vectorDir holds the test vector of docs/spec/encryption.md: an age
// identity, the public manifest of an encrypted release of one file
// (hello.txt) and that file's ciphertext, 0.age.
const vectorDir = "testdata/encryption"

// TestEncryptionVector reads the spec's vector as a recipient would: the
// public manifest parses, its sealed manifest opens with the identity and
// matches it, and 0.age decrypts to the file the sealed manifest lists.
// The spec shows the same bytes. RELAY_WRITE_VECTOR=1 makes a new vector.
func TestEncryptionVector(t *testing.T) {
	if os.Getenv("RELAY_WRITE_VECTOR") == "1" {
		writeVector(t)
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(vectorDir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ids, err := ParseIdentities(read("identity.txt"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := record.DecodeManifest(read("relay.json"))
	if err != nil || m.Encrypted == nil {
		t.Fatalf("public manifest: %v", err)
	}
	s, err := openSealed(m, ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Files) != 1 || s.Files[0].Path != "hello.txt" || s.Blob(s.Files[0]) != "0.age" || s.Notes != "the first release" {
		t.Fatalf("sealed manifest: %+v", s)
	}
	var out strings.Builder
	if err := decryptFile(&out, filepath.Join(vectorDir, "0.age"), s.Files[0], ids); err != nil {
		t.Fatal(err)
	}
	if out.String() != "hello from relay\n" {
		t.Fatalf("hello.txt decrypts to %q", out.String())
	}
	spec, err := os.ReadFile("docs/spec/encryption.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{string(read("identity.txt")), string(read("relay.json")), base64.StdEncoding.EncodeToString(read("0.age"))} {
		if !strings.Contains(string(spec), want) {
			t.Errorf("docs/spec/encryption.md does not show the vector's\n%s", want)
		}
	}
}

// writeVector makes a new vector in vectorDir.
func writeVector(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "hello.txt")
	os.WriteFile(src, []byte("hello from relay\n"), 0o644)
	mo := transfer.MakeOptions{Dir: t.TempDir(), Sources: []transfer.Source{{Path: src}}, Key: testKey(t, 1).PublicKey(),
		Version: record.MustParseVersion("1.0.0"), Published: time.Unix(1796601600, 0), Notes: "the first release"}
	done, err := seal(context.Background(), &mo, []Recipient{id.Recipient()})
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	b, err := transfer.Make(context.Background(), mo)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(vectorDir, 0o755)
	os.WriteFile(filepath.Join(vectorDir, "identity.txt"), []byte(id.String()+"\n"), 0o644)
	for _, name := range []string{"relay.json", "0.age"} {
		data, err := os.ReadFile(filepath.Join(b.Dir, name))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(vectorDir, name), data, 0o644)
	}
}
