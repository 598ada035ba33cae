package relay_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/dht/localnet"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/transfer"
)

// A provider publishes a release and a user fetches it, on a private DHT
// of real nodes on 127.0.0.1 (leave Bootstrap nil to use the public
// Mainline DHT). The user trusts only the provider's public key: the
// record is checked against it, and every file against the record.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	network, err := localnet.Start(ctx, localnet.Config{Nodes: 8})
	if err != nil {
		panic(err)
	}
	defer network.Close()
	bootstrap := []string{network.Bootstrap.Addr().String()}

	work, err := os.MkdirTemp("", "relay-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(work)
	dist := filepath.Join(work, "dist")
	must(os.MkdirAll(dist, 0o755))
	must(os.WriteFile(filepath.Join(dist, "NOTES.txt"), []byte("hello from 1.0.0"), 0o644))

	// The provider: its key (signer.Generate, once; kept with
	// signer.WriteKeyFile), and a client that stays up to seed.
	key, err := signer.Generate(nil)
	if err != nil {
		panic(err)
	}
	provider, err := relay.Open(ctx, relay.Config{DataDir: filepath.Join(work, "provider"), Bootstrap: bootstrap, Listen: "127.0.0.1:0"})
	if err != nil {
		panic(err)
	}
	defer provider.Close()
	pub, err := provider.Publish(ctx, relay.PublishOptions{
		Key:     key,
		Version: record.MustParseVersion("1.0.0"),
		Sources: []transfer.Source{{Path: dist}},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("published", pub.Release.Channel, pub.Release.Version)

	// The user: a short-lived, read-only client, given the public key.
	user, err := relay.Open(ctx, relay.Config{DataDir: filepath.Join(work, "user"), Bootstrap: bootstrap, Listen: "127.0.0.1:0", ReadOnly: true})
	if err != nil {
		panic(err)
	}
	defer user.Close()
	out := filepath.Join(work, "app")
	res, err := user.Fetch(ctx, relay.FetchOptions{Key: key.PublicKey(), Out: out})
	if err != nil {
		panic(err)
	}
	notes, err := os.ReadFile(filepath.Join(out, "NOTES.txt"))
	if err != nil {
		panic(err)
	}
	fmt.Println("fetched", res.Release.Version, "placed", len(res.Placed), "file:", string(notes))

	// Fetched again: nothing new.
	again, err := user.Fetch(ctx, relay.FetchOptions{Key: key.PublicKey(), Out: out})
	if err != nil {
		panic(err)
	}
	fmt.Println("up to date:", again.UpToDate)
	// Output:
	// published stable 1.0.0
	// fetched 1.0.0 placed 1 file: hello from 1.0.0
	// up to date: true
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}
