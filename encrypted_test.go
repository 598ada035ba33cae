package relay

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/transfer"
)

// encVictim is a user who accepted release 1.0.0 of a key, and holds an
// age identity; the publisher encrypts to it and to others.
type encVictim struct {
	*victim
	alice, bob, carol *age.X25519Identity
	big               []byte // the program for this platform, over 64 KiB
}

func newEncVictim(t *testing.T, ctx context.Context) *encVictim {
	v := &encVictim{victim: newVictim(t, newTestNet(t), ctx, 7)}
	for _, id := range []**age.X25519Identity{&v.alice, &v.bob, &v.carol} {
		var err error
		if *id, err = age.GenerateX25519Identity(); err != nil {
			t.Fatal(err)
		}
	}
	v.big = make([]byte, 200<<10)
	rand.Read(v.big)
	return v
}

// release writes the files of version: a program for this platform (of
// more than three age chunks), one for another, and a README.
func (v *encVictim) release(version string) string {
	dir := releaseDir(v.t, version)
	if err := os.WriteFile(filepath.Join(dir, "app_"+runtime.GOOS+"_"+runtime.GOARCH), append([]byte(version), v.big...), 0o755); err != nil {
		v.t.Fatal(err)
	}
	return dir
}

// forged publishes version as the key's release: the files of release
// sealed to recipients, then tamper changes the ciphertexts' folder (the
// blobs, the sealed manifest) before the bundle is made. It returns the
// sealed manifest.
func (v *encVictim) forged(ctx context.Context, version string, recipients []Recipient, tamper func(dir string, enc *record.Encrypted, blob func(path string) string)) {
	v.t.Helper()
	mo := transfer.MakeOptions{
		Dir: transfer.BundlesDir(v.pub.cfg.DataDir), Sources: []transfer.Source{{Path: v.release(version)}},
		Key: v.key.PublicKey(), Version: record.MustParseVersion(version), Published: time.Now(),
	}
	done, err := seal(ctx, &mo, recipients)
	if err != nil {
		v.t.Fatal(err)
	}
	defer done()
	dir := filepath.Dir(mo.Sources[0].Path)
	sealed := v.openSealed(mo)
	tamper(dir, mo.Encrypted, func(p string) string {
		return filepath.Join(dir, sealed.Blobs[p])
	})
	v.makeAndStore(ctx, mo)
}

// openSealed opens the sealed manifest of mo with every identity.
func (v *encVictim) openSealed(mo transfer.MakeOptions) *record.Sealed {
	v.t.Helper()
	m := &record.Manifest{Format: record.ManifestFormatEncrypted, Key: mo.Key, Channel: "stable", Version: mo.Version,
		Published: mo.Published.UTC().Truncate(time.Second), Encrypted: mo.Encrypted}
	for _, s := range mo.Sources {
		m.Files = append(m.Files, record.File{Path: filepath.Base(s.Path), OS: s.OS, Arch: s.Arch})
	}
	s, err := openSealed(m, []Identity{v.alice, v.bob})
	if err != nil {
		v.t.Fatal(err)
	}
	return s
}

// makeAndStore makes the bundle of mo, seeds it from the publisher and
// stores its record.
func (v *encVictim) makeAndStore(ctx context.Context, mo transfer.MakeOptions) {
	v.t.Helper()
	b, err := transfer.Make(ctx, mo)
	if err != nil {
		v.t.Fatal(err)
	}
	tc, err := v.pub.transfer()
	if err != nil {
		v.t.Fatal(err)
	}
	if _, err := tc.Seed(ctx, b.Infohash); err != nil {
		v.t.Fatal(err)
	}
	v.store(ctx, b.Release(time.Now().Add(time.Hour).UTC().Truncate(time.Second)), 0)
}

// refusedAs fetches with ids and requires the refusal want, the message,
// and nothing placed or saved.
func (v *encVictim) refusedAs(ctx context.Context, ids []Identity, want error, message string) {
	v.t.Helper()
	_, err := v.user.Fetch(ctx, FetchOptions{Key: v.key.PublicKey(), Out: v.out, Identities: ids})
	if !errors.Is(err, want) || !strings.Contains(err.Error(), message) {
		v.t.Fatalf("fetch: %v, want %v saying %q", err, want, message)
	}
	v.t.Logf("refused: %v", err)
	v.unchanged()
}

func TestEncryptedAttacks(t *testing.T) {
	ctx := ctxFor(t, 3*time.Minute)
	v := newEncVictim(t, ctx)
	ids := []Identity{v.alice}
	both := []Recipient{v.alice.Recipient(), v.bob.Recipient()}
	prog := "app_" + runtime.GOOS + "_" + runtime.GOARCH

	t.Run("swapped for another recipient's", func(t *testing.T) {
		// The program's ciphertext is one made for Bob alone: Alice reads
		// the manifest, not the file.
		v.forged(ctx, "1.1.0", both, func(dir string, _ *record.Encrypted, blob func(string) string) {
			var other bytes.Buffer
			w, _ := age.Encrypt(&other, v.bob.Recipient())
			w.Write(append([]byte("1.1.0"), v.big...))
			w.Close()
			os.WriteFile(blob(prog), other.Bytes(), 0o600)
		})
		v.refusedAs(ctx, ids, record.ErrFileMismatch, prog+" does not decrypt")
	})
	t.Run("truncated", func(t *testing.T) {
		// The last chunk cut off, at a chunk boundary.
		v.forged(ctx, "1.2.0", both, func(dir string, _ *record.Encrypted, blob func(string) string) {
			b, _ := os.ReadFile(blob(prog))
			os.WriteFile(blob(prog), b[:len(b)-(len(b)-ageHeaderLen(t, b))%(64<<10+16)], 0o600)
		})
		v.refusedAs(ctx, ids, record.ErrFileMismatch, prog+" does not decrypt")
	})
	t.Run("chunks reordered", func(t *testing.T) {
		v.forged(ctx, "1.3.0", both, func(dir string, _ *record.Encrypted, blob func(string) string) {
			b, _ := os.ReadFile(blob(prog))
			h, c := ageHeaderLen(t, b), 64<<10+16
			first := bytes.Clone(b[h : h+c])
			copy(b[h:h+c], b[h+c:h+2*c])
			copy(b[h+c:h+2*c], first)
			os.WriteFile(blob(prog), b, 0o600)
		})
		v.refusedAs(ctx, ids, record.ErrFileMismatch, prog+" does not decrypt")
	})
	t.Run("identity of another key's release", func(t *testing.T) {
		v.forged(ctx, "1.4.0", []Recipient{v.bob.Recipient()}, func(string, *record.Encrypted, func(string) string) {})
		v.refusedAs(ctx, ids, ErrNoIdentity, "stable 1.4.0 of "+v.key.PublicKey().String()+" is encrypted: no identity given reads it (1 tried)")
		v.refusedAs(ctx, nil, ErrNoIdentity, "(none was given)")
	})
	t.Run("claims encryption, files plain", func(t *testing.T) {
		v.forged(ctx, "1.5.0", both, func(dir string, _ *record.Encrypted, blob func(string) string) {
			os.WriteFile(blob(prog), append([]byte("1.5.0"), v.big...), 0o600)
		})
		v.refusedAs(ctx, ids, record.ErrFileMismatch, prog+" does not decrypt")
	})
	t.Run("sealed manifest of another release", func(t *testing.T) {
		// 1.0.0's sealed manifest replayed in 1.6.0's bundle.
		var old *record.Encrypted
		v.forged(ctx, "1.0.1", both, func(_ string, enc *record.Encrypted, _ func(string) string) { old = enc })
		v.forged(ctx, "1.6.0", both, func(_ string, enc *record.Encrypted, _ func(string) string) { *enc = *old })
		v.refusedAs(ctx, ids, record.ErrManifestMismatch, "sealed manifest is for version 1.0.1")
	})

	// The reverse: a manifest in the clear whose files are age files.
	// relay decrypts only what a manifest says is encrypted: the files are
	// the bytes the signed manifest names, and are placed as they are.
	t.Run("plain manifest, files encrypted", func(t *testing.T) {
		src := t.TempDir()
		var ct bytes.Buffer
		w, _ := age.Encrypt(&ct, v.alice.Recipient())
		w.Write([]byte("secret"))
		w.Close()
		os.WriteFile(filepath.Join(src, "notes.age"), ct.Bytes(), 0o644)
		v.makeAndStore(ctx, transfer.MakeOptions{Dir: transfer.BundlesDir(v.pub.cfg.DataDir), Sources: []transfer.Source{{Path: src}},
			Key: v.key.PublicKey(), Version: record.MustParseVersion("1.7.0"), Published: time.Now()})
		out := t.TempDir()
		res, err := v.user.Fetch(ctx, FetchOptions{Key: v.key.PublicKey(), Out: out, Identities: ids})
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(filepath.Join(out, "notes.age")); !bytes.Equal(got, ct.Bytes()) || res.Sealed != nil {
			t.Fatalf("placed %q, sealed %v", got, res.Sealed)
		}
	})

	// And a genuine encrypted release is placed, decrypted, this platform's
	// files only.
	t.Run("genuine", func(t *testing.T) {
		if _, err := v.pub.Publish(ctx, PublishOptions{Key: v.key, Version: record.MustParseVersion("2.0.0"), Notes: "secret notes",
			Sources: []transfer.Source{{Path: v.release("2.0.0")}}, Recipients: both}); err != nil {
			t.Fatal(err)
		}
		out := t.TempDir()
		res, err := v.user.Fetch(ctx, FetchOptions{Key: v.key.PublicKey(), Out: out, Identities: []Identity{v.bob}})
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(filepath.Join(out, prog)); !bytes.Equal(got, append([]byte("2.0.0"), v.big...)) {
			t.Fatalf("%s is not the release's", prog)
		}
		if _, err := os.Stat(filepath.Join(out, "app_plan9_mips")); err == nil {
			t.Error("another platform's file was placed")
		}
		if res.Manifest().Notes != "secret notes" || res.Bundle.Manifest.Notes != "" {
			t.Errorf("notes: sealed %q, public %q", res.Manifest().Notes, res.Bundle.Manifest.Notes)
		}
		pub, _ := os.ReadFile(filepath.Join(res.Bundle.Dir, record.ManifestName))
		for _, s := range []string{"app_", "README", "secret"} {
			if bytes.Contains(pub, []byte(s)) {
				t.Errorf("the public manifest says %q:\n%s", s, pub)
			}
		}
	})
}

// ageHeaderLen returns the length of the age file b's header and nonce:
// where its first chunk starts.
func ageHeaderLen(t *testing.T, b []byte) int {
	t.Helper()
	i := bytes.Index(b, []byte("\n--- "))
	if i < 0 {
		t.Fatal("no age header")
	}
	j := bytes.IndexByte(b[i+1:], '\n')
	return i + 1 + j + 1 + 16
}
