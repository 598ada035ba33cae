package transfer_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/transfer"
)

// A publisher makes a bundle of its files in its data folder and seeds
// it; a user's client fetches it from that peer (given here; found through
// the DHT when Config.DHT is set) and verifies every file against the
// release record before handing it over. Both run on 127.0.0.1.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	key, err := signer.NewPrivateKey(bytes.Repeat([]byte{1}, 32))
	if err != nil {
		panic(err)
	}
	work, err := os.MkdirTemp("", "transfer-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(work)
	src := filepath.Join(work, "dist")
	must(os.MkdirAll(src, 0o755))
	must(os.WriteFile(filepath.Join(src, "app_linux_amd64"), []byte("the program for linux/amd64"), 0o755))
	must(os.WriteFile(filepath.Join(src, "app_darwin_arm64"), []byte("the program for darwin/arm64"), 0o755))
	must(os.WriteFile(filepath.Join(src, "NOTES.txt"), []byte("what changed"), 0o644))

	// The publisher: the same files, key, version and time make the same
	// bundle, byte for byte, and so the same infohash.
	pubDir := filepath.Join(work, "publisher")
	b, err := transfer.Make(ctx, transfer.MakeOptions{
		Dir:       transfer.BundlesDir(pubDir),
		Sources:   []transfer.Source{{Path: src}},
		Key:       key.PublicKey(),
		Version:   record.MustParseVersion("1.0.0"),
		Published: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
	})
	if err != nil {
		panic(err)
	}
	for _, f := range b.Manifest.Files {
		platform := "every platform"
		if f.OS != "" {
			platform = f.OS + "/" + f.Arch
		}
		fmt.Printf("%s: %s\n", f.Path, platform)
	}
	seeder, err := transfer.NewClient(transfer.Config{DataDir: pubDir, Listen: "127.0.0.1:0"})
	if err != nil {
		panic(err)
	}
	defer seeder.Close()
	if _, err := seeder.Seed(ctx, b.Infohash); err != nil {
		panic(err)
	}

	// The user: the record (signed, found in the DHT) names the bundle;
	// here it is made from the bundle directly.
	rel := b.Release(time.Now().Add(24 * time.Hour))
	user, err := transfer.NewClient(transfer.Config{DataDir: filepath.Join(work, "user"), Listen: "127.0.0.1:0"})
	if err != nil {
		panic(err)
	}
	defer user.Close()
	got, err := user.Fetch(ctx, transfer.FetchRequest{
		Key:     key.PublicKey(),
		Release: rel,
		OS:      "linux", Arch: "amd64",
		Peers: []netip.AddrPort{seeder.Addr()},
	})
	if err != nil {
		panic(err)
	}
	for _, f := range got.Files {
		content, err := os.ReadFile(got.Path(f))
		if err != nil {
			panic(err)
		}
		fmt.Printf("fetched %s: %q\n", f.Path, content)
	}
	// Output:
	// NOTES.txt: every platform
	// app_darwin_arm64: darwin/arm64
	// app_linux_amd64: linux/amd64
	// fetched NOTES.txt: "what changed"
	// fetched app_linux_amd64: "the program for linux/amd64"
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}
