package relay

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/relay-sh/relay/dht/localnet"
)

// The torrent client listens at the DHT node's port number, which the
// system chose for UDP; when another program holds that number for TCP,
// it serves bundles on another port instead of failing every fetch.
func TestPeerPortTaken(t *testing.T) {
	ln := localnet.ForTest(t, localnet.Config{Nodes: 1})
	ctx := ctxFor(t, 30*time.Second)
	c, err := Open(ctx, Config{DataDir: t.TempDir(), Bootstrap: []string{ln.Bootstrap.Addr().String()}, Listen: "127.0.0.1:0", ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dhtAddr := c.Node().Addr()
	l, err := net.Listen("tcp", dhtAddr.String())
	if err == nil {
		defer l.Close()
	} else if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatal(err)
	}
	peer, err := c.PeerAddr()
	if err != nil {
		t.Fatalf("with TCP port %d taken: %v", dhtAddr.Port(), err)
	}
	if peer.Port() == dhtAddr.Port() || peer.Port() == 0 {
		t.Fatalf("serving bundles on %v, the DHT node on %v", peer, dhtAddr)
	}
}
