package interop

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/dht/localnet"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/transfer"
)

// BenchmarkFetchEncrypted: the whole `relay fetch --out DIR KEY` command
// fetching one big file (128 MiB; 1 GiB with RELAY_BENCH_BIG=1) from one
// `relay seed` process, as a release in the clear and as the same file
// encrypted to the fetcher (`--identity`), in turn; the best of
// RELAY_BENCH_ROUNDS rounds (default 2) of each. The encrypted fetch
// decrypts the ciphertext as its pieces are verified, hashing the
// plaintext (not the ciphertext: transfer.Checker), and moves the
// plaintext into --out; the plain one hashes the file as its pieces are
// verified and moves it into --out. Target: encrypted at most 1.2× plain.
func BenchmarkFetchEncrypted(b *testing.B) {
	size := int64(128 << 20)
	if os.Getenv("RELAY_BENCH_BIG") != "" {
		size = 1 << 30
	}
	rounds := 2
	if n, err := strconv.Atoi(os.Getenv("RELAY_BENCH_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	ln := localnet.ForTest(b, localnet.Config{Nodes: 16})
	ctx := ctxFor(b, 30*time.Minute)
	id, err := age.GenerateX25519Identity()
	if err != nil {
		b.Fatal(err)
	}
	idFile := filepath.Join(b.TempDir(), "identity.txt")
	if err := os.WriteFile(idFile, []byte(id.String()+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}

	// One data folder publishes both releases (under two keys); one
	// `relay seed` serves it.
	src := b.TempDir()
	f, err := os.Create(filepath.Join(src, "big"))
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for range size >> 20 {
		rand.Read(buf)
		f.Write(buf)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	seedDir := b.TempDir()
	plainKey, encKey := newKey(b), newKey(b)
	pub, err := relay.Open(ctx, relay.Config{DataDir: seedDir, Bootstrap: []string{ln.Bootstrap.Addr().String()}, Listen: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	for _, o := range []relay.PublishOptions{
		{Key: plainKey},
		{Key: encKey, Recipients: []relay.Recipient{id.Recipient()}},
	} {
		o.Version, o.Sources = record.MustParseVersion("1.0.0"), []transfer.Source{{Path: src}}
		if _, err := pub.Publish(ctx, o); err != nil {
			b.Fatal(err)
		}
	}
	pub.Close()
	seed := runRelay(b, ln, seedDir, "--json", "seed")
	seed.Env = append(seed.Env, fmt.Sprintf("RELAY_LISTEN=127.0.0.1:%d", freePort(b)))
	waitStdoutFor(b, seed, `"seeding"`, time.Minute)

	want := fileSHA256(b, filepath.Join(src, "big"))
	var plain, enc, plainCPU, encCPU time.Duration
	better := func(cur *time.Duration, d time.Duration) {
		if *cur == 0 || d < *cur {
			*cur = d
		}
	}
	for round := range rounds {
		for _, c := range []struct {
			args      []string
			wall, cpu *time.Duration
		}{
			{[]string{plainKey.PublicKey().String()}, &plain, &plainCPU},
			{[]string{"--identity", idFile, encKey.PublicKey().String()}, &enc, &encCPU},
		} {
			out := b.TempDir()
			fetch := runRelay(b, ln, b.TempDir(), append([]string{"-q", "fetch", "--out", out}, c.args...)...)
			better(c.wall, timed(b, func() { run(b, fetch) }))
			better(c.cpu, fetch.ProcessState.UserTime()+fetch.ProcessState.SystemTime())
			if got := fileSHA256(b, filepath.Join(out, "big")); got != want {
				b.Fatalf("relay fetch %v placed a file of sha-256 %x, not the release's", c.args, got)
			}
			os.RemoveAll(out)
		}
		b.Logf("round %d: plain %v (CPU %v), encrypted %v (CPU %v)", round+1, plain, plainCPU, enc, encCPU)
	}
	gib := float64(size) / (1 << 30)
	b.ReportMetric(plain.Seconds(), "s/fetch-plain")
	b.ReportMetric(enc.Seconds(), "s/fetch-encrypted")
	b.ReportMetric(plainCPU.Seconds()/gib, "cpu-s/GiB-plain")
	b.ReportMetric(encCPU.Seconds()/gib, "cpu-s/GiB-encrypted")
	b.ReportMetric(enc.Seconds()/plain.Seconds(), "x-plain-fetch")
}

// fileSHA256 returns the SHA-256 of the file at p.
func fileSHA256(b *testing.B, p string) [32]byte {
	f, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		b.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}
