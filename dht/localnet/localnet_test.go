package localnet_test

import (
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/relay-sh/relay/dht/localnet"
)

func TestStartIsFull(t *testing.T) {
	start := time.Now()
	var l *slog.Logger
	if testing.Verbose() {
		l = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		l = slog.New(&onlyLocalnet{l.Handler()})
	}
	net := localnet.ForTest(t, localnet.Config{Nodes: 32, Logger: l})
	t.Logf("formed in %v", time.Since(start))
	all := net.All()
	for _, n := range all {
		if err := localnet.Full(n, all); err != nil {
			t.Error(err)
		}
	}
}
