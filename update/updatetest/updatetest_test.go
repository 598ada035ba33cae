package updatetest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/relay-sh/relay/dht"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/update"
	"github.com/relay-sh/relay/update/updatetest"
)

// A program's test of its own update: an updater of version 1.0.0 finds
// version 2.0.0 of the program, published by a server on 127.0.0.1, with
// its notes and download size. Apply would install it.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "updatetest-example-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	srv, err := updatetest.Start(ctx, filepath.Join(dir, "server"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()

	// The release: the program built for this platform, named for it.
	files := map[string][]byte{updatetest.Name("app"): []byte("app 2.0.0"), "NOTICE": []byte("2.0.0")}
	if _, err := srv.PublishFiles(ctx, "2.0.0", files); err != nil {
		fmt.Println(err)
		return
	}

	exe := filepath.Join(dir, "app")
	os.WriteFile(exe, []byte("app 1.0.0"), 0o755)
	u, err := update.New(srv.Config(update.Config{
		Version:    record.MustParseVersion("1.0.0"),
		Executable: exe,
		DataDir:    filepath.Join(dir, "data"),
	}))
	if err != nil {
		fmt.Println(err)
		return
	}
	if rel, err := u.Check(ctx); err == nil && rel != nil {
		fmt.Printf("found %s: %d bytes to fetch\n", rel.Version, rel.Size)
	} else {
		fmt.Println(rel, err)
	}
	// Output: found 2.0.0: 14 bytes to fetch
}

// TestOtherKeyFindsNothing: the server's releases are signed by its own
// key; an updater that trusts another key (a program's real one) finds
// nothing there, and installs nothing.
func TestOtherKeyFindsNothing(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv := updatetest.New(t)
	if _, err := srv.PublishFiles(ctx, "2.0.0", map[string][]byte{updatetest.Name("app"): []byte("app 2.0.0")}); err != nil {
		t.Fatal(err)
	}
	other, err := signer.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(t.TempDir(), "app")
	if err := os.WriteFile(exe, []byte("app 1.0.0"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := srv.Config(update.Config{Version: record.MustParseVersion("1.0.0"), Executable: exe, DataDir: t.TempDir()})
	cfg.Key = other.PublicKey()
	u, err := update.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rel, err := u.Apply(ctx); !errors.Is(err, dht.ErrNotFound) {
		t.Fatalf("apply with another key: %+v, %v; want %v", rel, err, dht.ErrNotFound)
	}
	if b, _ := os.ReadFile(exe); string(b) != "app 1.0.0" {
		t.Fatalf("executable holds %q", b)
	}
}
