package dht_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relay-sh/relay/dht/localnet"
	"github.com/relay-sh/relay/signer"
)

// TestMain closes the shared network at the end and fails the run if any
// goroutine of the dht packages outlives its node.
func TestMain(m *testing.M) {
	code := m.Run()
	if shared.net != nil {
		if err := shared.net.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "closing the shared network:", err)
			code = 1
		}
	}
	if err := noGoroutinesLeft(10 * time.Second); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

// shared is one 32-node network for the tests that do not close or
// disturb its nodes (started on first use, closed by TestMain).
var shared struct {
	once sync.Once
	net  *localnet.Net
	err  error
}

func sharedNet(t *testing.T) *localnet.Net {
	t.Helper()
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		shared.net, shared.err = localnet.Start(ctx, localnet.Config{Nodes: 32})
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.net
}

// noGoroutinesLeft waits up to d for every goroutine running code of
// anacrolix/dht or of this module's dht packages to end.
func noGoroutinesLeft(d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var left []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "anacrolix/dht") || strings.Contains(g, "relay-sh/relay/dht.") ||
				strings.Contains(g, "relay-sh/relay/dht/localnet.") {
				if !strings.Contains(g, "noGoroutinesLeft") {
					left = append(left, g)
				}
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d goroutines left after every node closed:\n\n%s", len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func newKey(t testing.TB) *signer.PrivateKey {
	t.Helper()
	k, err := signer.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
