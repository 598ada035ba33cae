package signer

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/scrypt"
)

const (
	pemPlain  = "RELAY PRIVATE KEY"
	pemSealed = "RELAY SEALED PRIVATE KEY"
	// sealAAD binds the ciphertext to this file format.
	sealAAD = "relay sealed key v1"
)

// Scrypt parameters for sealing: N=2^15, r=8, p=1 (about 32 MiB and
// 50-100 ms), the interactive cost recommended by scrypt's author.
const (
	scryptLogN = 15
	scryptR    = 8
	scryptP    = 1
	// maxScryptLogN and maxScryptMemory bound what a key file may ask for
	// when opened, so a hostile file cannot demand gigabytes: scrypt uses
	// 128·r·2^logN bytes, 32 MiB with relay's own parameters.
	maxScryptLogN   = 22
	maxScryptMemory = 256 << 20
)

var (
	// ErrLooseMode is returned for a key file that group or others may read.
	ErrLooseMode = errors.New("key file is readable by group or others")
	// ErrSealed is returned when a sealed key file is opened with no
	// passphrase.
	ErrSealed = errors.New("key file is sealed with a passphrase")
	// ErrWrongPassphrase is returned when a sealed key file does not open
	// with the passphrase given.
	ErrWrongPassphrase = errors.New("wrong passphrase for key file")
	// ErrKeyFile is returned for a file that is not a key file.
	ErrKeyFile = errors.New("not a relay key file")
)

// Passphrase supplies the passphrase of a sealed key file when one is
// needed. It is called at most once per file.
type Passphrase func() ([]byte, error)

// MarshalKeyFile encodes k as a key file. With a non-empty passphrase the
// seed is sealed with scrypt and XChaCha20-Poly1305; rand supplies the salt
// and nonce (crypto/rand.Reader when nil).
func MarshalKeyFile(k *PrivateKey, passphrase []byte, rnd io.Reader) ([]byte, error) {
	if len(passphrase) == 0 {
		return pem.EncodeToMemory(&pem.Block{
			Type:    pemPlain,
			Headers: map[string]string{"Public-Key": k.PublicKey().String()},
			Bytes:   k.Seed(),
		}), nil
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	salt := make([]byte, 16)
	nonce := make([]byte, chacha20poly1305.NonceSizeX)
	if _, err := io.ReadFull(rnd, salt); err != nil {
		return nil, fmt.Errorf("failed to read random salt: %w", err)
	}
	if _, err := io.ReadFull(rnd, nonce); err != nil {
		return nil, fmt.Errorf("failed to read random nonce: %w", err)
	}
	aead, err := sealKey(passphrase, salt, scryptLogN, scryptR, scryptP)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{
		Type: pemSealed,
		Headers: map[string]string{
			"Public-Key": k.PublicKey().String(),
			"KDF":        fmt.Sprintf("scrypt logN=%d r=%d p=%d", scryptLogN, scryptR, scryptP),
			"Salt":       base64.StdEncoding.EncodeToString(salt),
			"Nonce":      base64.StdEncoding.EncodeToString(nonce),
		},
		Bytes: aead.Seal(nil, nonce, k.Seed(), []byte(sealAAD)),
	}), nil
}

func sealKey(passphrase, salt []byte, logN, r, p int) (interface {
	Seal(dst, nonce, plaintext, ad []byte) []byte
	Open(dst, nonce, ciphertext, ad []byte) ([]byte, error)
}, error) {
	key, err := scrypt.Key(passphrase, salt, 1<<logN, r, p, chacha20poly1305.KeySize)
	if err != nil {
		return nil, fmt.Errorf("failed to derive key from passphrase: %w", err)
	}
	return chacha20poly1305.NewX(key)
}

// ParseKeyFile decodes a key file. It reads relay's PEM forms (plain or
// sealed) and, for keys made by other tools, a file holding only the seed
// as 64 hex characters (pkarr's form) or as 32 raw bytes. passphrase is
// called only for a sealed file; it may be nil, in which case a sealed file
// gives ErrSealed.
func ParseKeyFile(data []byte, passphrase Passphrase) (*PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		if t := bytes.TrimSpace(data); len(t) == 2*ed25519.SeedSize {
			if seed, err := hex.DecodeString(string(t)); err == nil {
				return NewPrivateKey(seed)
			}
		}
		if len(data) == ed25519.SeedSize {
			return NewPrivateKey(data)
		}
		return nil, ErrKeyFile
	}
	var k *PrivateKey
	var err error
	switch block.Type {
	case pemPlain:
		k, err = NewPrivateKey(block.Bytes)
	case pemSealed:
		k, err = openSealed(block, passphrase)
	default:
		return nil, fmt.Errorf("%w: unknown block %q", ErrKeyFile, block.Type)
	}
	if err != nil {
		return nil, err
	}
	if pk := block.Headers["Public-Key"]; pk != "" && pk != k.PublicKey().String() {
		return nil, fmt.Errorf("%w: its Public-Key header does not match its seed", ErrKeyFile)
	}
	return k, nil
}

func openSealed(block *pem.Block, passphrase Passphrase) (*PrivateKey, error) {
	var logN, r, p int
	if _, err := fmt.Sscanf(block.Headers["KDF"], "scrypt logN=%d r=%d p=%d", &logN, &r, &p); err != nil {
		return nil, fmt.Errorf("%w: bad KDF header %q", ErrKeyFile, block.Headers["KDF"])
	}
	if logN < 1 || logN > maxScryptLogN || r < 1 || r > 32 || p < 1 || p > 16 || 128*r<<logN > maxScryptMemory {
		return nil, fmt.Errorf("%w: scrypt parameters out of range in %q", ErrKeyFile, block.Headers["KDF"])
	}
	salt, err1 := base64.StdEncoding.DecodeString(block.Headers["Salt"])
	nonce, err2 := base64.StdEncoding.DecodeString(block.Headers["Nonce"])
	if err := errors.Join(err1, err2); err != nil || len(salt) < 8 || len(nonce) != chacha20poly1305.NonceSizeX {
		return nil, fmt.Errorf("%w: bad salt or nonce", ErrKeyFile)
	}
	if passphrase == nil {
		return nil, ErrSealed
	}
	pass, err := passphrase()
	if err != nil {
		return nil, fmt.Errorf("failed to read passphrase: %w", err)
	}
	if len(pass) == 0 {
		return nil, ErrSealed
	}
	aead, err := sealKey(pass, salt, logN, r, p)
	if err != nil {
		return nil, err
	}
	seed, err := aead.Open(nil, nonce, block.Bytes, []byte(sealAAD))
	if err != nil {
		return nil, ErrWrongPassphrase
	}
	return NewPrivateKey(seed)
}

// ReadKeyFile reads and decodes the key file at path. A file that group or
// others may read is refused with ErrLooseMode before it is read (on
// systems with Unix permissions).
func ReadKeyFile(path string, passphrase Passphrase) (*PrivateKey, error) {
	data, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ParseKeyFile(data, passphrase)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// ReadPublicKey returns the public key of the key file at path, and
// whether the file is sealed. A file relay wrote names its public key in
// a Public-Key header, sealed or not, so no passphrase is needed to read
// it (as minisign and age show a public key without the secret); the
// header is checked against the seed whenever the key itself is opened.
// For a file without the header (a bare seed, or an older relay's sealed
// file without one), the key is opened, asking passphrase if sealed. The
// file's mode is checked as ReadKeyFile does.
func ReadPublicKey(path string, passphrase Passphrase) (PublicKey, bool, error) {
	data, err := readKeyFile(path)
	if err != nil {
		return PublicKey{}, false, err
	}
	sealed := IsSealed(data)
	if block, _ := pem.Decode(data); block != nil && block.Headers["Public-Key"] != "" {
		pk, err := ParsePublicKey(block.Headers["Public-Key"])
		if err != nil {
			return PublicKey{}, false, fmt.Errorf("%s: %w: bad Public-Key header: %w", path, ErrKeyFile, err)
		}
		return pk, sealed, nil
	}
	k, err := ParseKeyFile(data, passphrase)
	if err != nil {
		return PublicKey{}, false, fmt.Errorf("%s: %w", path, err)
	}
	return k.PublicKey(), sealed, nil
}

// readKeyFile reads the key file at path, refusing it with ErrLooseMode
// if group or others may read it.
func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("failed to open key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("failed to open key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrKeyFile, path)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o, want 0600", ErrLooseMode, path, fi.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("failed to read key file: %w", err)
	}
	return data, nil
}

// WriteKeyFile writes k to a new key file at path with mode 0600, sealed
// when passphrase is not empty. It never replaces an existing file (the
// error then wraps fs.ErrExist) and never leaves a partly written one: the
// key is written to a temporary file in the same folder, synced, and linked
// into place.
func WriteKeyFile(path string, k *PrivateKey, passphrase []byte) error {
	data, err := MarshalKeyFile(k, passphrase, nil)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("failed to make key folder: %w", err)
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("refusing to overwrite %s: %w", path, fs.ErrExist)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("failed to write key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	// CreateTemp makes the file 0600 already; Chmod states it.
	err = errors.Join(tmp.Chmod(0o600), write(tmp, data), tmp.Sync(), tmp.Close())
	if err != nil {
		return fmt.Errorf("failed to write key file: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("refusing to overwrite %s: %w", path, fs.ErrExist)
		}
		// Some file systems have no hard links: fall back to an exclusive
		// create, which still never replaces a file.
		return writeExclusive(path, data)
	}
	syncDir(dir)
	return nil
}

func write(w io.Writer, data []byte) error {
	_, err := w.Write(data)
	return err
}

func writeExclusive(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("failed to write key file: %w", err)
	}
	if err := errors.Join(write(f, data), f.Sync(), f.Close()); err != nil {
		os.Remove(path)
		return fmt.Errorf("failed to write key file: %w", err)
	}
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// IsSealed reports whether data is a sealed key file: whether the block
// ParseKeyFile would read is a sealed one. Text elsewhere in the file that
// merely names a sealed block does not count.
func IsSealed(data []byte) bool {
	block, _ := pem.Decode(data)
	return block != nil && block.Type == pemSealed
}

// MaxKeyFileSize is the size below which LooksLikeKeyFile looks at a file:
// every key file relay writes or reads is far smaller.
const MaxKeyFileSize = 64 << 10

// LooksLikeKeyFile reports whether data holds a private key in a form
// ParseKeyFile reads, whatever the file is named: a PEM block of relay's
// (plain or sealed) anywhere in it, or only a 64-hex-character seed
// (pkarr's form). A file of exactly 32 raw bytes, which ParseKeyFile also
// takes as a seed, is not recognised: too many other files have that size.
// A publisher uses it never to release a key by mistake.
func LooksLikeKeyFile(data []byte) bool {
	if t := bytes.TrimSpace(data); len(t) == 2*ed25519.SeedSize {
		if _, err := hex.DecodeString(string(t)); err == nil {
			return true
		}
	}
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return false
		}
		if block.Type == pemPlain || block.Type == pemSealed {
			return true
		}
	}
}
