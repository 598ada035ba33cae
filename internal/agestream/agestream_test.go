package agestream

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"testing"
	"time"

	"filippo.io/age"
)

// encrypt returns plain encrypted by age to the recipients of ids.
func encrypt(t *testing.T, plain []byte, ids ...*age.X25519Identity) []byte {
	t.Helper()
	var rs []age.Recipient
	for _, id := range ids {
		rs = append(rs, id.Recipient())
	}
	var ct bytes.Buffer
	w, err := age.Encrypt(&ct, rs...)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(plain)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return ct.Bytes()
}

// decrypt writes ct to a Decrypter in writes of step bytes (and a few
// odd sizes) and returns the plaintext it wrote and Close's error.
func decrypt(ct []byte, size int64, step int, ids ...age.Identity) ([]byte, error) {
	var out bytes.Buffer
	d := NewDecrypter(&out, size, ids...)
	for i := 0; len(ct) > 0; i++ {
		n := min(len(ct), step+i%3)
		if n, err := d.Write(ct[:n]); n == 0 || err != nil {
			return nil, err
		}
		ct = ct[n:]
	}
	return out.Bytes(), d.Close()
}

func newID(t *testing.T) *age.X25519Identity {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestDecrypter: what age encrypts, a Decrypter fed in writes of any size
// gives back, for every size about the chunk boundaries, to each
// recipient; it matches what age.Decrypt reads.
func TestDecrypter(t *testing.T) {
	alice, bob := newID(t), newID(t)
	for _, size := range []int{0, 1, 100, chunkSize - 1, chunkSize, chunkSize + 1, 2 * chunkSize, 3*chunkSize + 17, outSize + 5} {
		plain := make([]byte, size)
		rand.Read(plain)
		ct := encrypt(t, plain, alice, bob)
		r, err := age.Decrypt(bytes.NewReader(ct), bob)
		if err != nil {
			t.Fatal(err)
		}
		if want, err := io.ReadAll(r); err != nil || !bytes.Equal(want, plain) {
			t.Fatalf("age.Decrypt: %v", err)
		}
		for _, step := range []int{1 << 20, sealed, 7919, 5} {
			if size > chunkSize && step == 5 {
				continue
			}
			for _, id := range []age.Identity{alice, bob} {
				got, err := decrypt(ct, int64(len(ct)), step, id)
				if err != nil || !bytes.Equal(got, plain) {
					t.Fatalf("%d bytes in writes of %d: %d bytes back (%v)", size, step, len(got), err)
				}
			}
		}
	}
}

// TestDecrypterRefuses: a ciphertext altered anywhere, cut short at a
// chunk boundary or inside one, with chunks swapped, with bytes after its
// end, for another recipient, or not age at all yields an error and no
// unauthenticated plaintext.
func TestDecrypterRefuses(t *testing.T) {
	alice, carol := newID(t), newID(t)
	plain := make([]byte, 3*chunkSize+100)
	rand.Read(plain)
	ct := encrypt(t, plain, alice)
	hdr := len(ct) - (len(plain) + 4*16) // header and nonce
	swapped := bytes.Clone(ct)
	copy(swapped[hdr:], ct[hdr+sealed:hdr+2*sealed])
	copy(swapped[hdr+sealed:], ct[hdr:hdr+sealed])
	flipped := func(i int) []byte {
		b := bytes.Clone(ct)
		b[i] ^= 1
		return b
	}
	// A full last chunk marked as not last: the file cut at a boundary.
	cut := ct[:hdr+2*sealed]
	for _, c := range []struct {
		name string
		ct   []byte
		size int64
		ids  []age.Identity
		want error
	}{
		{"header altered", flipped(30), int64(len(ct)), []age.Identity{alice}, nil},
		{"first chunk altered", flipped(hdr + 10), int64(len(ct)), []age.Identity{alice}, nil},
		{"last tag altered", flipped(len(ct) - 1), int64(len(ct)), []age.Identity{alice}, nil},
		{"cut at a chunk boundary", cut, int64(len(cut)), []age.Identity{alice}, nil},
		{"cut inside a chunk", ct[:len(ct)-50], int64(len(ct) - 50), []age.Identity{alice}, nil},
		{"fewer bytes than its size", ct[:len(ct)-50], int64(len(ct)), []age.Identity{alice}, io.ErrUnexpectedEOF},
		{"chunks swapped", swapped, int64(len(ct)), []age.Identity{alice}, nil},
		{"bytes after the end", append(bytes.Clone(ct), 0), int64(len(ct)), []age.Identity{alice}, ErrTrailing},
		{"another recipient's", ct, int64(len(ct)), []age.Identity{carol}, nil},
		{"not age", plain, int64(len(plain)), []age.Identity{alice}, nil},
		{"empty", nil, 0, []age.Identity{alice}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			d := NewDecrypter(&out, c.size, c.ids...)
			for b := c.ct; len(b) > 0; {
				n := min(len(b), 10000)
				d.Write(b[:n])
				b = b[n:]
			}
			err := d.Close()
			if err == nil || c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("Close: %v, want an error (%v)", err, c.want)
			}
			if !bytes.HasPrefix(plain, out.Bytes()) {
				t.Fatalf("wrote %d bytes that are not the plaintext", out.Len())
			}
			t.Logf("%v; %d bytes written before", err, out.Len())
		})
	}
}

// BenchmarkDecrypter decrypts a 64 MiB age file written to a Decrypter in
// 1 MiB writes, as a fetch hands over its pieces, against age.Decrypt's
// reader read through a 256 KiB buffer (x-age-decrypt: the ratio of the
// times, measured in the same run).
func BenchmarkDecrypter(b *testing.B) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		b.Fatal(err)
	}
	plain := make([]byte, 64<<20)
	rand.Read(plain)
	var ct bytes.Buffer
	w, _ := age.Encrypt(&ct, id.Recipient())
	w.Write(plain)
	w.Close()
	var ageTime, ours time.Duration
	buf := make([]byte, 256<<10)
	b.SetBytes(int64(len(plain)))
	for b.Loop() {
		start := time.Now()
		r, err := age.Decrypt(bytes.NewReader(ct.Bytes()), id)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyBuffer(io.Discard, r, buf); err != nil {
			b.Fatal(err)
		}
		ageTime += time.Since(start)
		start = time.Now()
		d := NewDecrypter(io.Discard, int64(ct.Len()), id)
		for c := ct.Bytes(); len(c) > 0; c = c[min(len(c), 1<<20):] {
			d.Write(c[:min(len(c), 1<<20)])
		}
		if err := d.Close(); err != nil {
			b.Fatal(err)
		}
		ours += time.Since(start)
	}
	b.ReportMetric(ours.Seconds()/ageTime.Seconds(), "x-age-decrypt")
}
