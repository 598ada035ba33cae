package relay

import (
	"bufio"
	"cmp"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"filippo.io/age"
	"filippo.io/age/agessh"
	"filippo.io/age/armor"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/transfer"
)

// Recipient is someone an encrypted release is readable by: an age
// X25519 public key (age1...) or an SSH public key (ssh-ed25519,
// ssh-rsa), as age itself takes them.
type Recipient = age.Recipient

// maxRecipientsFile bounds what ReadRecipientsFile reads.
const maxRecipientsFile = 1 << 20

// ParseRecipient parses one recipient: an age public key ("age1...") or
// an SSH public key line ("ssh-ed25519 AAAA... comment").
func ParseRecipient(s string) (Recipient, error) {
	s = strings.TrimSpace(s)
	switch {
	case strings.HasPrefix(s, "age1"):
		r, err := age.ParseX25519Recipient(s)
		if err != nil {
			return nil, fmt.Errorf("recipient %q: %w", clipText(s), err)
		}
		return r, nil
	case strings.HasPrefix(s, "ssh-"):
		r, err := agessh.ParseRecipient(s)
		if err != nil {
			return nil, fmt.Errorf("recipient %q: %w", clipText(s), err)
		}
		return r, nil
	}
	return nil, fmt.Errorf("recipient %q is neither an age public key (age1...) nor an SSH public key (ssh-ed25519, ssh-rsa)", clipText(s))
}

// ParseRecipients reads recipients one a line, as age -R reads them:
// blank lines and lines that begin with # are skipped.
func ParseRecipients(r io.Reader) ([]Recipient, error) {
	var out []Recipient
	sc := bufio.NewScanner(io.LimitReader(r, maxRecipientsFile))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		rc, err := ParseRecipient(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		out = append(out, rc)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// ReadRecipientsFile reads the recipients listed in the file at path
// (ParseRecipients); a file with none is an error.
func ReadRecipientsFile(path string) ([]Recipient, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("recipients file: %w", err)
	}
	defer f.Close()
	rs, err := ParseRecipients(f)
	if err != nil {
		return nil, fmt.Errorf("recipients file %s: %w", path, err)
	}
	if len(rs) == 0 {
		return nil, fmt.Errorf("recipients file %s lists no recipient", path)
	}
	return rs, nil
}

// clipText shortens what a user typed for an error message.
func clipText(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// seal turns mo into the options of an encrypted bundle: it encrypts
// the files mo.Sources would bundle to recipients, each into its own age
// file under an opaque name (0.age, 1.age, ... in the bundle's order) in
// a new folder under mo.Dir, and seals the manifest that lists them (key,
// channel, version, published, notes, every file with the SHA-256 of its
// plaintext and its mode) into mo.Encrypted. mo.Sources become the
// ciphertexts, each with its file's platform, and mo.Notes is cleared.
// The caller calls done once the bundle is made.
func seal(ctx context.Context, mo *transfer.MakeOptions, recipients []Recipient) (done func(), err error) {
	m := record.Manifest{
		Format: record.ManifestFormat, Key: mo.Key, Channel: cmp.Or(mo.Channel, transfer.DefaultChannel),
		Version: mo.Version, Published: mo.Published, Notes: mo.Notes,
	}
	tmp, sources, enc, err := sealedSources(ctx, mo.Dir, mo.Sources, recipients, m, mo.LeftOut)
	if err != nil {
		return nil, err
	}
	mo.Sources, mo.Notes, mo.Encrypted = sources, "", enc
	return func() { os.RemoveAll(tmp) }, nil
}

// sealedSources is seal's work: it returns the folder of ciphertexts,
// the sources that bundle them, and the sealed manifest.
func sealedSources(ctx context.Context, dir string, sources []transfer.Source, recipients []Recipient, m record.Manifest, leftOut func(transfer.LeftOut)) (tmp string, out []transfer.Source, enc *record.Encrypted, err error) {
	files, err := transfer.Collect(sources, leftOut)
	if err != nil {
		return "", nil, nil, fmt.Errorf("make bundle: %w", err)
	}
	for _, f := range files {
		if f.File.OS == "" && f.File.Arch != "" {
			return "", nil, nil, fmt.Errorf("make bundle: %s is for arch %s of every os, which an encrypted release cannot say", f.File.Path, f.File.Arch)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, nil, fmt.Errorf("make bundle: %w", err)
	}
	tmp, err = os.MkdirTemp(dir, ".encrypt-")
	if err != nil {
		return "", nil, nil, fmt.Errorf("make bundle: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	sealed := record.Sealed{Manifest: m, Blobs: make(map[string]string, len(files))}
	sealed.Files = nil
	for i, sf := range files {
		if err := ctx.Err(); err != nil {
			return "", nil, nil, err
		}
		blob := fmt.Sprintf("%d.age", i)
		f := sf.File
		if f.SHA256, err = encryptFile(filepath.Join(tmp, blob), sf.Src, f.Size, recipients); err != nil {
			return "", nil, nil, fmt.Errorf("make bundle: %w", err)
		}
		sealed.Files = append(sealed.Files, f)
		sealed.Blobs[f.Path] = blob
		s := transfer.Source{Path: filepath.Join(tmp, blob), OS: f.OS, Arch: f.Arch, AnyPlatform: f.OS == ""}
		out = append(out, s)
	}
	sb, err := sealed.Encode()
	if err != nil {
		return "", nil, nil, fmt.Errorf("make bundle: %w", err)
	}
	var armored strings.Builder
	aw := armor.NewWriter(&armored)
	w, err := age.Encrypt(aw, recipients...)
	if err == nil {
		_, err = w.Write(sb)
	}
	if err == nil {
		err = w.Close()
	}
	if err == nil {
		err = aw.Close()
	}
	if err != nil {
		return "", nil, nil, fmt.Errorf("make bundle: failed to encrypt the manifest: %w", err)
	}
	return tmp, out, &record.Encrypted{Scheme: record.SchemeAge, Manifest: armored.String()}, nil
}

// encryptFile encrypts the file at src, which must have size bytes, to
// recipients into a new file at dst, and returns the SHA-256 of what it
// read.
func encryptFile(dst, src string, size int64, recipients []Recipient) (record.Digest, error) {
	in, err := os.Open(src)
	if err != nil {
		return record.Digest{}, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return record.Digest{}, err
	}
	defer out.Close()
	bw := bufio.NewWriterSize(out, 1<<20)
	w, err := age.Encrypt(bw, recipients...)
	if err != nil {
		return record.Digest{}, fmt.Errorf("failed to encrypt %s: %w", src, err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(in, size+1))
	if err != nil {
		return record.Digest{}, fmt.Errorf("failed to encrypt %s: %w", src, err)
	}
	if n != size {
		return record.Digest{}, fmt.Errorf("%s changed while it was bundled", src)
	}
	if err := w.Close(); err != nil {
		return record.Digest{}, fmt.Errorf("failed to encrypt %s: %w", src, err)
	}
	if err := bw.Flush(); err != nil {
		return record.Digest{}, fmt.Errorf("failed to encrypt %s: %w", src, err)
	}
	return record.Digest(h.Sum(nil)), out.Close()
}
