package record

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/relay-sh/relay/signer"
)

// ManifestName is the manifest's file name at the root of every bundle.
const ManifestName = "relay.json"

// ManifestFormat is the manifest format version this package writes and
// reads. A manifest with another format is refused.
const ManifestFormat = 1

// MaxManifestSize is the largest manifest a watcher accepts.
const MaxManifestSize = 4 << 20

// Manifest is the bundle's relay.json: who published which version on
// which channel, and every file with its size, SHA-256 and mode.
type Manifest struct {
	Format    int              `json:"format"`
	Key       signer.PublicKey `json:"key"`
	Channel   string           `json:"channel"`
	Version   Version          `json:"version"`
	Published time.Time        `json:"published"`
	Notes     string           `json:"notes,omitempty"`
	Files     []File           `json:"files"`
	// Encrypted is set in the manifest of an encrypted release (format
	// ManifestFormatEncrypted): Files are then the ciphertexts, and the
	// release's own manifest is sealed in it (record/encrypted.go).
	Encrypted *Encrypted `json:"encrypted,omitempty"`
}

// File is one released file of a bundle.
type File struct {
	// Path is slash-separated and relative to the bundle's root folder.
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 Digest `json:"sha256"`
	// Mode holds the permission bits the file is installed with.
	Mode Mode `json:"mode"`
	// OS and Arch name the platform the file is built for, in Go's terms
	// (linux, amd64); empty for a file every platform needs.
	OS   string `json:"os,omitempty"`
	Arch string `json:"arch,omitempty"`
}

// Mode is a file's permission bits; its text form is four octal digits.
type Mode fs.FileMode

func (m Mode) String() string { return fmt.Sprintf("%04o", uint32(m)) }

func (m Mode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

func (m *Mode) UnmarshalText(b []byte) error {
	v, err := strconv.ParseUint(string(b), 8, 32)
	if err != nil || v&^0o777 != 0 {
		return fmt.Errorf("%w: file mode %q is not octal permission bits", ErrMalformed, clip(string(b)))
	}
	*m = Mode(v)
	return nil
}

var (
	channelRE  = regexp.MustCompile(`^[a-z0-9-]{1,63}$`)
	platformRE = regexp.MustCompile(`^[a-z0-9]{1,32}$`)
)

// ValidChannel reports whether c is a channel name: a DNS label of
// [a-z0-9-], 1 to 63 characters.
func ValidChannel(c string) error {
	if !channelRE.MatchString(c) {
		return fmt.Errorf("%w: channel %q is not 1 to 63 of [a-z0-9-]", ErrMalformed, clip(c))
	}
	return nil
}

// Validate checks every field of m: format, channel, version, and each
// file's path (relative, clean, unique, not relay.json, no file inside
// another), size and platform.
func (m *Manifest) Validate() error {
	switch {
	case m.Format == ManifestFormatEncrypted && m.Encrypted != nil:
		if err := m.Encrypted.validate(); err != nil {
			return err
		}
	case m.Format != ManifestFormat || m.Encrypted != nil:
		return fmt.Errorf("%w: manifest format %d, this relay reads %d and %d (encrypted)", ErrMalformed, m.Format, ManifestFormat, ManifestFormatEncrypted)
	}
	if m.Key.IsZero() {
		return fmt.Errorf("%w: manifest has no key", ErrMalformed)
	}
	if err := ValidChannel(m.Channel); err != nil {
		return err
	}
	if m.Version.IsZero() {
		return fmt.Errorf("%w: manifest has no version", ErrMalformed)
	}
	seen := make(map[string]bool, len(m.Files))
	for _, f := range m.Files {
		if err := ValidPath(f.Path); err != nil {
			return err
		}
		if seen[f.Path] {
			return fmt.Errorf("%w: file %q listed twice", ErrMalformed, f.Path)
		}
		seen[f.Path] = true
		if f.Size < 0 {
			return fmt.Errorf("%w: file %q has negative size", ErrMalformed, f.Path)
		}
		if fs.FileMode(f.Mode)&^fs.ModePerm != 0 {
			return fmt.Errorf("%w: file %q has mode %s", ErrMalformed, f.Path, f.Mode)
		}
		for _, p := range []string{f.OS, f.Arch} {
			if p != "" && !platformRE.MatchString(p) {
				return fmt.Errorf("%w: file %q has platform %q", ErrMalformed, f.Path, clip(p))
			}
		}
	}
	// A file may not also be a folder of another file.
	for p := range seen {
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if seen[d] {
				return fmt.Errorf("%w: %q is both a file and a folder", ErrMalformed, d)
			}
		}
	}
	return nil
}

// ValidPath reports whether p may name a file in a bundle: a clean,
// relative, slash-separated path, not relay.json or .relay*, in UTF-8 with
// no control, line-separator or bidirectional formatting character (what
// a terminal or a hook's list of files could misread).
func ValidPath(p string) error {
	bad := p == "" || p != path.Clean(p) || path.IsAbs(p) || p == ManifestName ||
		p == ".." || strings.HasPrefix(p, "../") || strings.ContainsAny(p, "\\\x00") ||
		strings.HasPrefix(p, ".relay") // reserved for relay's own bookkeeping
	if !bad {
		for _, part := range strings.Split(p, "/") {
			if part == "." || part == ".." || part == "" {
				bad = true
			}
		}
	}
	if bad {
		return fmt.Errorf("%w: file path %q is not a clean relative path", ErrMalformed, clip(p))
	}
	if !utf8.ValidString(p) {
		return fmt.Errorf("%w: file path %q is not UTF-8", ErrMalformed, clip(p))
	}
	for _, r := range p {
		if unsafeRune(r) {
			return fmt.Errorf("%w: file path %q holds the control character %U", ErrMalformed, clip(p), r)
		}
	}
	return nil
}

// unsafeRune reports whether r may not appear in a file path: a control
// character (C0, DEL, C1: a newline would split a hook's list of files,
// an escape sequence would rewrite a terminal), a line or paragraph
// separator, or a bidirectional formatting character (which shows a name
// in another order than it is).
func unsafeRune(r rune) bool {
	return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' ||
		r >= '\u202a' && r <= '\u202e' || r >= '\u2066' && r <= '\u2069' || r == '\u200e' || r == '\u200f'
}

// Encode validates m and returns its canonical encoding: files sorted by
// path, the published time in UTC to the second, indented JSON with a
// final newline. The same manifest always gives the same bytes.
func (m *Manifest) Encode() ([]byte, error) {
	c := *m
	c.Files = slices.Clone(m.Files)
	slices.SortFunc(c.Files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	c.Published = c.Published.UTC().Truncate(time.Second)
	if c.Files == nil {
		c.Files = []File{}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(&c, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("failed to encode manifest: %w", err)
	}
	return append(b, '\n'), nil
}

// DecodeManifest parses and validates a manifest. Unknown fields are
// ignored, so later formats can add some.
func DecodeManifest(b []byte) (*Manifest, error) {
	if len(b) > MaxManifestSize {
		return nil, fmt.Errorf("%w: manifest of %d bytes is over %d", ErrMalformed, len(b), MaxManifestSize)
	}
	var m Manifest
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: manifest: %v", ErrMalformed, err)
	}
	if d.More() {
		return nil, fmt.Errorf("%w: manifest has data after its end", ErrMalformed)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return &m, nil
}

// FilesSize returns the total size of m's files.
func (m *Manifest) FilesSize() int64 {
	var n int64
	for _, f := range m.Files {
		n += f.Size
	}
	return n
}

// BundleSize returns the size of the whole bundle, which is what a
// release record's n states: every file and the manifest itself, whose
// encoding has manifestLen bytes.
func (m *Manifest) BundleSize(manifestLen int) int64 {
	return m.FilesSize() + int64(manifestLen)
}

// Select returns the files a platform needs: those built for goos and
// goarch, and those built for no particular one. An empty goos selects
// every file.
func (m *Manifest) Select(goos, goarch string) []File {
	var out []File
	for _, f := range m.Files {
		if goos == "" || (f.OS == "" || f.OS == goos) && (f.Arch == "" || f.Arch == goarch) {
			out = append(out, f)
		}
	}
	return out
}

// Match checks a manifest against the release record that named it:
// encoded must be the manifest's exact bytes as fetched, whose SHA-256
// must equal r.Manifest; the key, channel and version must be the
// record's; and the bundle's size must equal r.Size. Any difference is
// ErrManifestMismatch (a manifest of another channel or release cannot be
// passed off as this one's).
func (m *Manifest) Match(key signer.PublicKey, r Release, encoded []byte) error {
	if got := SHA256(encoded); got != r.Manifest {
		return fmt.Errorf("%w: manifest sha-256 is %s, the record says %s", ErrManifestMismatch, got, r.Manifest)
	}
	switch {
	case m.Key != key:
		return fmt.Errorf("%w: manifest is for key %s", ErrManifestMismatch, m.Key)
	case m.Channel != r.Channel:
		return fmt.Errorf("%w: manifest is for channel %q, the record for %q", ErrManifestMismatch, m.Channel, r.Channel)
	case m.Version.Compare(r.Version) != 0:
		return fmt.Errorf("%w: manifest is for version %s, the record for %s", ErrManifestMismatch, m.Version, r.Version)
	case m.BundleSize(len(encoded)) != r.Size:
		return fmt.Errorf("%w: bundle is %d bytes, the record says %d", ErrManifestMismatch, m.BundleSize(len(encoded)), r.Size)
	}
	return nil
}
