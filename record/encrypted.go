package record

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// ManifestFormatEncrypted is the format of the manifest of an encrypted
// release: its files are age ciphertexts under opaque names, and its
// Encrypted field holds the release's own manifest, encrypted
// (docs/spec/encryption.md). A relay that reads only ManifestFormat
// refuses it plainly instead of taking ciphertexts for the release.
const ManifestFormatEncrypted = 2

// SchemeAge names the one encryption scheme: age v1
// (https://age-encryption.org/v1), X25519 or SSH recipients.
const SchemeAge = "age"

// ArmorHeader begins the ASCII armor of an age file, as age -a writes it.
const ArmorHeader = "-----BEGIN AGE ENCRYPTED FILE-----"

// Encrypted is what an encrypted release's public manifest says about
// the part it hides.
type Encrypted struct {
	// Scheme is SchemeAge.
	Scheme string `json:"scheme"`
	// Manifest is the sealed manifest (Sealed, as JSON) encrypted to the
	// release's recipients, in age's ASCII armor.
	Manifest string `json:"manifest"`
}

// validate checks e's form; only a recipient can check what it holds.
func (e *Encrypted) validate() error {
	switch {
	case e.Scheme != SchemeAge:
		return fmt.Errorf("%w: encryption scheme %q, this relay reads %q", ErrMalformed, clip(e.Scheme), SchemeAge)
	case !strings.HasPrefix(e.Manifest, ArmorHeader):
		return fmt.Errorf("%w: encrypted manifest is not age armor", ErrMalformed)
	}
	return nil
}

// Sealed is the plaintext of Encrypted.Manifest: the release's own
// manifest (format ManifestFormat, the files as they are placed, with
// the SHA-256 of their plaintext, and the notes), and for each of its
// files the bundle file that holds it encrypted.
type Sealed struct {
	Manifest
	// Blobs maps each file's path to the path of its age ciphertext in
	// the bundle, a file of the public manifest.
	Blobs map[string]string `json:"blobs"`
}

// Encode validates s and returns its canonical encoding, as
// Manifest.Encode does.
func (s *Sealed) Encode() ([]byte, error) {
	mb, err := s.Manifest.Encode()
	if err != nil {
		return nil, err
	}
	// Re-read the canonical manifest so that its files come sorted, then
	// add the blobs (a map: encoding/json sorts its keys).
	var c Sealed
	if err := json.Unmarshal(mb, &c.Manifest); err != nil {
		return nil, fmt.Errorf("failed to encode sealed manifest: %w", err)
	}
	c.Blobs = s.Blobs
	b, err := json.MarshalIndent(&c, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("failed to encode sealed manifest: %w", err)
	}
	return append(b, '\n'), nil
}

// DecodeSealed parses a sealed manifest (the decrypted Encrypted.Manifest
// of outer) and checks it against outer, the public manifest it came in:
// it must be a valid manifest of format ManifestFormat for the same key,
// channel, version and time of publication, and must name each file of
// outer as the ciphertext of exactly one of its own files, for the same
// platform. Any difference is ErrManifestMismatch.
func DecodeSealed(b []byte, outer *Manifest) (*Sealed, error) {
	if len(b) > MaxManifestSize {
		return nil, fmt.Errorf("%w: sealed manifest of %d bytes is over %d", ErrMalformed, len(b), MaxManifestSize)
	}
	var s Sealed
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(&s); err != nil {
		return nil, fmt.Errorf("%w: sealed manifest: %v", ErrMalformed, err)
	}
	if d.More() {
		return nil, fmt.Errorf("%w: sealed manifest has data after its end", ErrMalformed)
	}
	if s.Encrypted != nil || s.Format != ManifestFormat {
		return nil, fmt.Errorf("%w: sealed manifest has format %d", ErrMalformed, s.Format)
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("sealed manifest: %w", err)
	}
	switch {
	case s.Key != outer.Key:
		return nil, fmt.Errorf("%w: sealed manifest is for key %s", ErrManifestMismatch, s.Key)
	case s.Channel != outer.Channel:
		return nil, fmt.Errorf("%w: sealed manifest is for channel %q", ErrManifestMismatch, s.Channel)
	case s.Version.Compare(outer.Version) != 0:
		return nil, fmt.Errorf("%w: sealed manifest is for version %s", ErrManifestMismatch, s.Version)
	case !s.Published.Equal(outer.Published.Truncate(time.Second)):
		return nil, fmt.Errorf("%w: sealed manifest was published at %s", ErrManifestMismatch, s.Published)
	case len(s.Blobs) != len(s.Files) || len(outer.Files) != len(s.Files):
		return nil, fmt.Errorf("%w: sealed manifest names %d ciphertexts for %d files, the bundle holds %d",
			ErrManifestMismatch, len(s.Blobs), len(s.Files), len(outer.Files))
	}
	blobs := make(map[string]File, len(outer.Files))
	for _, f := range outer.Files {
		blobs[f.Path] = f
	}
	used := make(map[string]bool, len(s.Files))
	for _, f := range s.Files {
		bp, ok := s.Blobs[f.Path]
		blob, held := blobs[bp]
		switch {
		case !ok:
			return nil, fmt.Errorf("%w: sealed manifest names no ciphertext for %s", ErrManifestMismatch, f.Path)
		case !held || used[bp]:
			return nil, fmt.Errorf("%w: ciphertext %q of %s is not a bundle file of its own", ErrManifestMismatch, clip(bp), f.Path)
		case blob.OS != f.OS || blob.Arch != f.Arch:
			return nil, fmt.Errorf("%w: ciphertext %s is for another platform than %s", ErrManifestMismatch, bp, f.Path)
		}
		used[bp] = true
	}
	return &s, nil
}

// Blob returns the bundle file that holds f encrypted.
func (s *Sealed) Blob(f File) string { return s.Blobs[f.Path] }
