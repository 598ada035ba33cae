package localnet

import (
	"context"
	"testing"
	"time"
)

// ForTest starts a local network for a test or benchmark, fails it when
// the network does not form within a minute, and closes the network when
// it ends.
func ForTest(tb testing.TB, cfg Config) *Net {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := Start(ctx, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := n.Close(); err != nil {
			tb.Error(err)
		}
	})
	return n
}
