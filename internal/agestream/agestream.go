// Package agestream decrypts an age file of a known size as its bytes are
// written to it, in order, without the copies and the allocation per
// chunk of age.Decrypt's reader: a fetch hands it each verified piece of a
// ciphertext as the piece arrives.
//
// The header is age's own to read (age.DecryptHeader unwraps the file key
// with the identities and checks the header's MAC); this package reads the
// payload that follows as the age format (age-encryption.org/v1) defines
// it: a 16-byte nonce, then the plaintext in chunks of 64 KiB sealed with
// ChaCha20-Poly1305 under HKDF-SHA-256(file key, nonce, "payload"), each
// chunk's nonce its number (11 bytes, big-endian) and a last byte that is
// 1 for the last chunk only. The ciphertext's size, known in advance, says
// which chunk is last; a last chunk holds at least one byte unless it is
// the only one. It never writes a plaintext byte it has not authenticated.
//
// It must never be the only way to read what relay encrypts: files stay
// readable by age itself (age.Decrypt, the age command).
package agestream

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"filippo.io/age"
	"golang.org/x/crypto/chacha20poly1305"
)

const (
	// chunkSize is the plaintext of a full chunk; sealed adds the tag.
	chunkSize = 64 << 10
	sealed    = chunkSize + chacha20poly1305.Overhead
	nonceSize = 16
	// MaxHeader bounds the header a Decrypter reads: about 100 bytes a
	// recipient.
	MaxHeader = 4 << 20
	// outSize is how much plaintext is written to the destination at
	// once: one age chunk, while it is in the CPU's cache. Writing 1 MiB
	// at once cost a 1 GiB encrypted fetch 0.8 s more system time (the
	// copies into the page cache), 6.1 against 5.2 s of CPU in all.
	outSize = chunkSize
)

// ErrTrailing is reported for bytes written beyond the size given.
var ErrTrailing = errors.New("more bytes than the age file's size")

// Decrypter decrypts an age file of a given size written to it. Write
// takes the file's bytes in order, in writes of any size, and writes the
// plaintext, authenticated chunk by chunk, to its destination; Close
// checks that the whole file came and ends with its last chunk. After an
// error, writes are dropped and Close returns it.
type Decrypter struct {
	dst  io.Writer
	size int64 // of the whole age file
	ids  []age.Identity

	n       int64 // bytes written so far
	header  []byte
	scan    int   // where to look for the header's end next
	payload int64 // bytes of payload (after the nonce), once the header is read
	nonce   []byte
	aead    interface {
		Open(dst, nonce, ciphertext, additionalData []byte) ([]byte, error)
	}
	chunks  int64 // chunks the payload holds
	opened  int64 // chunks opened
	counter [chacha20poly1305.NonceSize]byte
	chunk   []byte // a chunk's bytes so far
	out     []byte // plaintext not yet written
	err     error
}

// NewDecrypter returns a Decrypter of an age file of size bytes that
// writes its plaintext to dst, reading the header with ids.
func NewDecrypter(dst io.Writer, size int64, ids ...age.Identity) *Decrypter {
	return &Decrypter{dst: dst, size: size, ids: ids}
}

// Write decrypts what p completes. It always reports all of p written:
// its errors are Close's.
func (d *Decrypter) Write(p []byte) (int, error) {
	n := len(p)
	if d.err != nil {
		return n, nil
	}
	if int64(n) > d.size-d.n {
		d.err = ErrTrailing
		return n, nil
	}
	d.n += int64(n)
	if d.err = d.write(p); d.err == nil && d.n == d.size {
		d.err = d.flush()
	}
	return n, nil
}

func (d *Decrypter) write(p []byte) error {
	if d.aead == nil {
		var err error
		if p, err = d.readHeader(p); err != nil || d.aead == nil {
			return err
		}
	}
	for len(p) > 0 {
		want := d.chunkLen()
		if len(d.chunk) == 0 && len(p) >= want {
			// A whole chunk in p: opened where it is.
			if err := d.open(p[:want]); err != nil {
				return err
			}
			p = p[want:]
			continue
		}
		k := min(len(p), want-len(d.chunk))
		d.chunk = append(d.chunk, p[:k]...)
		p = p[k:]
		if len(d.chunk) == want {
			if err := d.open(d.chunk); err != nil {
				return err
			}
			d.chunk = d.chunk[:0]
		}
	}
	return nil
}

// readHeader gathers the header and the nonce from p and returns what
// follows them. Once it has both it derives the payload key.
func (d *Decrypter) readHeader(p []byte) ([]byte, error) {
	if d.nonce == nil {
		// The header ends with its MAC line, the first to start with
		// "--- " (its stanzas' lines start with "-> " or are base64).
		d.header = append(d.header, p...)
		p = nil
		i := bytes.Index(d.header[d.scan:], []byte("\n--- "))
		if i < 0 {
			if len(d.header) > MaxHeader {
				return nil, fmt.Errorf("no age header in the first %d bytes", MaxHeader)
			}
			d.scan = max(0, len(d.header)-4)
			return nil, nil
		}
		i += d.scan
		j := bytes.IndexByte(d.header[i+1:], '\n')
		if j < 0 {
			d.scan = i
			return nil, nil
		}
		end := i + 1 + j + 1
		p = d.header[end:]
		d.header = d.header[:end:end]
		d.nonce = make([]byte, 0, nonceSize)
	}
	k := min(len(p), nonceSize-len(d.nonce))
	d.nonce = append(d.nonce, p[:k]...)
	p = p[k:]
	if len(d.nonce) < nonceSize {
		return nil, nil
	}
	d.payload = d.size - int64(len(d.header)) - nonceSize
	d.chunks = (d.payload + sealed - 1) / sealed
	last := d.payload - (d.chunks-1)*sealed
	if d.chunks == 0 || last < chacha20poly1305.Overhead || last == chacha20poly1305.Overhead && d.chunks > 1 {
		return nil, fmt.Errorf("an age payload of %d bytes is not whole chunks", d.payload)
	}
	fileKey, err := age.DecryptHeader(d.header, d.ids...)
	if err != nil {
		return nil, err
	}
	key, err := hkdf.Key(sha256.New, fileKey, d.nonce, "payload", chacha20poly1305.KeySize)
	if err != nil {
		return nil, err
	}
	aead, err := chacha20poly1305.New(key)
	if err != nil {
		return nil, err
	}
	d.aead = aead
	d.header = nil
	d.chunk = make([]byte, 0, sealed)
	d.out = make([]byte, 0, outSize)
	return p, nil
}

// chunkLen is the sealed length of the next chunk.
func (d *Decrypter) chunkLen() int {
	if d.opened == d.chunks-1 {
		return int(d.payload - (d.chunks-1)*sealed)
	}
	return sealed
}

// open authenticates and decrypts chunk c, the next one, into d.out.
func (d *Decrypter) open(c []byte) error {
	last := d.opened == d.chunks-1
	if last {
		d.counter[len(d.counter)-1] = 1
	}
	out, err := d.aead.Open(d.out, d.counter[:], c, nil)
	if err != nil {
		return fmt.Errorf("age chunk %d of %d does not authenticate", d.opened+1, d.chunks)
	}
	d.out = out
	d.opened++
	for i := len(d.counter) - 2; i >= 0; i-- {
		if d.counter[i]++; d.counter[i] != 0 {
			break
		}
	}
	if len(d.out)+chunkSize > cap(d.out) {
		return d.flush()
	}
	return nil
}

// flush writes the plaintext opened so far.
func (d *Decrypter) flush() error {
	if len(d.out) == 0 {
		return nil
	}
	_, err := d.dst.Write(d.out)
	d.out = d.out[:0]
	return err
}

// Close reports the first error, or that the file was not whole.
func (d *Decrypter) Close() error {
	switch {
	case d.err != nil:
		return d.err
	case d.nonce == nil:
		return errors.New("no age header")
	case d.n < d.size || d.aead == nil || d.opened < d.chunks:
		return io.ErrUnexpectedEOF
	}
	return nil
}
