package record

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// sealedPair returns the public manifest of an encrypted release and its
// sealed manifest: testManifest's files, each held by "<n>.age".
func sealedPair(t testing.TB) (*Manifest, *Sealed) {
	in := testManifest(t)
	s := &Sealed{Manifest: *in, Blobs: map[string]string{}}
	out := *in
	out.Format, out.Notes, out.Files = ManifestFormatEncrypted, "", nil
	out.Encrypted = &Encrypted{Scheme: SchemeAge, Manifest: ArmorHeader + "\n...\n"}
	for i, f := range in.Files {
		blob := string(rune('a'+i)) + ".age"
		s.Blobs[f.Path] = blob
		out.Files = append(out.Files, File{Path: blob, Size: f.Size + 200, SHA256: SHA256([]byte(blob)), Mode: 0o644, OS: f.OS, Arch: f.Arch})
	}
	return &out, s
}

func TestSealedRoundTrip(t *testing.T) {
	out, s := sealedPair(t)
	ob, err := out.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeManifest(ob); err != nil {
		t.Fatalf("public manifest: %v", err)
	}
	b, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeSealed(b, out)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := got.Encode(); !bytes.Equal(again, b) {
		t.Fatalf("decode then encode changed the bytes:\n%s\n%s", b, again)
	}
	if got.Blob(File{Path: "README.md"}) != s.Blobs["README.md"] || got.Notes != s.Notes {
		t.Fatalf("decoded %+v", got)
	}
}

func TestSealedRefusals(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(out *Manifest, s *Sealed)
		want   error
		says   string
	}{
		{"another version", func(_ *Manifest, s *Sealed) { s.Version = MustParseVersion("9.0.0") }, ErrManifestMismatch, "for version 9.0.0"},
		{"another key", func(_ *Manifest, s *Sealed) { s.Key = fixedKey(t, 2).PublicKey() }, ErrManifestMismatch, "for key"},
		{"another channel", func(_ *Manifest, s *Sealed) { s.Channel = "beta" }, ErrManifestMismatch, "for channel"},
		{"another time", func(_ *Manifest, s *Sealed) { s.Published = s.Published.Add(3e9) }, ErrManifestMismatch, "published at"},
		{"a file without ciphertext", func(_ *Manifest, s *Sealed) { delete(s.Blobs, "README.md"); s.Blobs["x"] = "a.age" }, ErrManifestMismatch, "no ciphertext for README.md"},
		{"one ciphertext twice", func(_ *Manifest, s *Sealed) { s.Blobs["README.md"] = s.Blobs["docs/guide.txt"] }, ErrManifestMismatch, "not a bundle file of its own"},
		{"a ciphertext the bundle lacks", func(_ *Manifest, s *Sealed) { s.Blobs["README.md"] = "z.age" }, ErrManifestMismatch, "not a bundle file of its own"},
		{"another platform", func(out *Manifest, s *Sealed) { out.Files[0].OS = "plan9" }, ErrManifestMismatch, "another platform"},
		{"a ciphertext more", func(out *Manifest, _ *Sealed) { out.Files = append(out.Files, File{Path: "q.age"}) }, ErrManifestMismatch, "the bundle holds 5"},
		{"a bad path", func(_ *Manifest, s *Sealed) { s.Files[0].Path = "../x" }, ErrMalformed, "not a clean relative path"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, s := sealedPair(t)
			c.change(out, s)
			b, err := s.Encode()
			if err != nil {
				b, _ = jsonOf(s)
			}
			_, err = DecodeSealed(b, out)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("got %v, want %v saying %q", err, c.want, c.says)
			}
		})
	}
	// A public manifest claiming encryption needs a scheme it knows and
	// age armor; a plain one may not carry an encrypted part.
	out, _ := sealedPair(t)
	out.Encrypted.Scheme = "pgp"
	if _, err := out.Encode(); !errors.Is(err, ErrMalformed) {
		t.Errorf("scheme pgp: %v", err)
	}
	out, _ = sealedPair(t)
	out.Format = ManifestFormat
	if _, err := out.Encode(); !errors.Is(err, ErrMalformed) {
		t.Errorf("format 1 with an encrypted part: %v", err)
	}
	out.Format, out.Encrypted = ManifestFormatEncrypted, nil
	if _, err := out.Encode(); !errors.Is(err, ErrMalformed) {
		t.Errorf("format 2 without one: %v", err)
	}
}

func FuzzSealed(f *testing.F) {
	out, s := sealedPair(f)
	b, err := s.Encode()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"format":1,"blobs":{}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeSealed(b, out)
		if err != nil {
			return
		}
		a, err := s.Encode()
		if err != nil {
			t.Fatalf("decoded sealed manifest does not encode: %v", err)
		}
		s2, err := DecodeSealed(a, out)
		if err != nil {
			t.Fatalf("canonical encoding does not decode: %v", err)
		}
		if c, _ := s2.Encode(); !bytes.Equal(a, c) {
			t.Fatal("canonical encoding is not stable")
		}
	})
}

// jsonOf encodes s without validating it.
func jsonOf(s *Sealed) ([]byte, error) { return json.Marshal(s) }
