package relay

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"filippo.io/age"
	"filippo.io/age/agessh"
	"filippo.io/age/armor"
	"golang.org/x/crypto/ssh"

	"github.com/relay-sh/relay/internal/diskio"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/transfer"
)

// Identity reads encrypted releases: an age X25519 identity
// (AGE-SECRET-KEY-1...) or an unencrypted SSH private key, the private
// half of a Recipient.
type Identity = age.Identity

// ErrNoIdentity is returned by Fetch for an encrypted release that none
// of FetchOptions.Identities can read (or when none is given): nothing is
// fetched beyond the manifest, placed or saved.
var ErrNoIdentity = errors.New("no identity given reads it")

// maxIdentityFile bounds what ReadIdentityFile reads.
const maxIdentityFile = 1 << 20

// ParseIdentities parses the identities of an identity file: age's
// format (AGE-SECRET-KEY-1... lines, # comments), as age-keygen writes
// it, or an SSH private key in PEM (OpenSSH's own format included). A
// passphrase-protected SSH key is refused.
func ParseIdentities(b []byte) ([]Identity, error) {
	if bytes.Contains(b, []byte("-----BEGIN")) && bytes.Contains(b, []byte("PRIVATE KEY-----")) {
		id, err := agessh.ParseIdentity(b)
		var missing *ssh.PassphraseMissingError
		if errors.As(err, &missing) {
			return nil, errors.New("the SSH key is protected by a passphrase, which relay does not ask for: use an age identity (age-keygen) or a copy of the key without one")
		}
		if err != nil {
			return nil, err
		}
		return []Identity{id}, nil
	}
	ids, err := age.ParseIdentities(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	return ids, nil
}

// ReadIdentityFile reads the identities in the file at path
// (ParseIdentities).
func ReadIdentityFile(path string) ([]Identity, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("identity file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxIdentityFile+1))
	if err == nil && len(b) > maxIdentityFile {
		err = fmt.Errorf("over %d bytes", maxIdentityFile)
	}
	if err == nil {
		var ids []Identity
		if ids, err = ParseIdentities(b); err == nil {
			return ids, nil
		}
	}
	return nil, fmt.Errorf("identity file %s: %w", path, err)
}

// openSealed decrypts and checks the sealed manifest of m, the verified
// manifest of an encrypted release (record.DecodeSealed): ErrNoIdentity
// when no identity of ids reads it.
func openSealed(m *record.Manifest, ids []Identity) (*record.Sealed, error) {
	if len(ids) == 0 {
		return nil, fmt.Errorf("%s %s of %s is encrypted: %w (none was given)", m.Channel, m.Version, m.Key, ErrNoIdentity)
	}
	r, err := age.Decrypt(armor.NewReader(strings.NewReader(m.Encrypted.Manifest)), ids...)
	var nomatch *age.NoIdentityMatchError
	if errors.As(err, &nomatch) {
		return nil, fmt.Errorf("%s %s of %s is encrypted: %w (%d tried)", m.Channel, m.Version, m.Key, ErrNoIdentity, len(ids))
	}
	var b []byte
	if err == nil {
		b, err = io.ReadAll(io.LimitReader(r, record.MaxManifestSize+1))
	}
	if err != nil {
		return nil, fmt.Errorf("%w: encrypted manifest: %v", record.ErrManifestMismatch, err)
	}
	return record.DecodeSealed(b, m)
}

// openSealed returns the transfer.FetchRequest.OnManifest of a fetch
// with options o: for an encrypted release, the sealed manifest is opened
// with o.Identities before any file is fetched, and kept in r.Sealed
// (unless o.Sealed keeps the release as it is).
func (r *FetchResult) openSealed(o FetchOptions) func(*record.Manifest) error {
	return func(m *record.Manifest) error {
		if m.Encrypted == nil || o.Sealed {
			return nil
		}
		s, err := openSealed(m, o.Identities)
		r.Sealed = s
		return err
	}
}

// decrypted makes res, whose bundle f holds an encrypted release, list
// the release's own files (from its sealed manifest) and says where they
// go decrypted: o.Out, or without it the bundle's folder of plaintexts in
// the data folder (PlainDir). It returns the placement that decrypts
// them.
func (c *Client) decrypted(res *FetchResult, f *transfer.Fetched, o FetchOptions) (placement, error) {
	s, files, err := openFetched(f, res.Sealed, o.Identities)
	if err != nil {
		return placement{}, err
	}
	res.Sealed, res.Files, res.plain = s, files, o.Out
	if o.Out == "" {
		res.plain = PlainDir(c.cfg.DataDir, f.Bundle.Infohash)
		if err := os.MkdirAll(res.plain, 0o700); err != nil {
			return placement{}, err
		}
	}
	return placement{decrypt: decrypter(f.Bundle.Dir, s, o.Identities)}, nil
}

// PlainDir is where a fetch with no Out folder puts the decrypted files
// of the encrypted release ih: <data dir>/plain/<infohash>, private to
// its owner like the rest of the data folder.
func PlainDir(dataDir string, ih record.Infohash) string {
	return filepath.Join(dataDir, "plain", ih.String())
}

// openFetched returns the sealed manifest of the encrypted release f
// (opening it with ids unless the caller has it already) and the files
// of it that f fetched: those whose ciphertexts it holds.
func openFetched(f *transfer.Fetched, s *record.Sealed, ids []Identity) (*record.Sealed, []record.File, error) {
	if s == nil {
		var err error
		if s, err = openSealed(f.Bundle.Manifest, ids); err != nil {
			return nil, nil, err
		}
	}
	fetched := make(map[string]bool, len(f.Files))
	for _, bf := range f.Files {
		fetched[bf.Path] = true
	}
	var files []record.File
	for _, pf := range s.Files {
		if fetched[s.Blob(pf)] {
			files = append(files, pf)
		}
	}
	return s, files, nil
}

// decrypter returns the placement function of an encrypted release's
// files: each is decrypted from its ciphertext in the bundle folder dir,
// and checked against the sealed manifest as it is written.
func decrypter(dir string, s *record.Sealed, ids []Identity) func(io.Writer, record.File) error {
	return func(w io.Writer, f record.File) error {
		return decryptFile(w, filepath.Join(dir, filepath.FromSlash(s.Blob(f))), f, ids)
	}
}

// decryptFile decrypts the age file at src with ids to w, streaming
// (age's chunks of 64 KiB, each authenticated, in order, the last one
// marked as last), reading at most f.Size+1 bytes of plaintext, and
// checks the plaintext's size and SHA-256 against f. A ciphertext that
// does not decrypt (truncated, altered, chunks reordered, or encrypted to
// other recipients) is record.ErrFileMismatch.
func decryptFile(w io.Writer, src string, f record.File, ids []Identity) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("failed to read %s: %w", f.Path, err)
	}
	defer in.Close()
	return decryptTo(w, bufio.NewReaderSize(in, 256<<10), f, ids)
}

// decryptTo is decryptFile for the ciphertext read from in.
func decryptTo(w io.Writer, in io.Reader, f record.File, ids []Identity) error {
	r, err := age.Decrypt(in, ids...)
	if err != nil {
		return fmt.Errorf("%w: %s does not decrypt: %v", record.ErrFileMismatch, f.Path, err)
	}
	h := sha256.New()
	buf := make([]byte, 256<<10)
	ew := &errWriter{w: w}
	if f, ok := w.(interface{ Name() string }); ok {
		// The file is synced before it takes its name: have the disk
		// write it while the rest is decrypted, not all at the end.
		ew.wb = diskio.NewWriteback(f.Name())
		defer ew.wb.Close()
	}
	n, err := io.CopyBuffer(io.MultiWriter(ew, h), io.LimitReader(r, f.Size+1), buf)
	if ew.err != nil {
		return fmt.Errorf("failed to write %s: %w", f.Path, ew.err)
	}
	if err != nil {
		return fmt.Errorf("%w: %s does not decrypt: %v", record.ErrFileMismatch, f.Path, err)
	}
	if n != f.Size {
		return fmt.Errorf("%w: %s has %d bytes, the manifest says %d", record.ErrFileMismatch, f.Path, n, f.Size)
	}
	if got := record.Digest(h.Sum(nil)); got != f.SHA256 {
		return fmt.Errorf("%w: %s has sha-256 %s, the manifest says %s", record.ErrFileMismatch, f.Path, got, f.SHA256)
	}
	return nil
}

// errWriter tells a failure to write from a failure to read, and hints
// the write-back of every writebackStep bytes written to wb.
type errWriter struct {
	w        io.Writer
	err      error
	wb       *diskio.Writeback
	off, cut int64
}

// writebackStep is how much decrypted data is written before its
// write-back is asked for.
const writebackStep = 8 << 20

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil {
		e.err = err
	}
	e.off += int64(n)
	if e.off-e.cut >= writebackStep {
		e.wb.Hint(e.cut, e.off-e.cut)
		e.cut = e.off
	}
	return n, err
}
