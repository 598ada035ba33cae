package transfer

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/relay-sh/relay/dht"
	"github.com/relay-sh/relay/dht/localnet"
)

// TestFetchDHT: the leecher is given no address: it finds the seeder
// through a local DHT network, where the seeder announced the bundle with
// its TCP port, which is its DHT node's port number (one port for both);
// on either engine.
func TestFetchDHT(t *testing.T) {
	t.Parallel()
	for _, e := range []Engine{EngineTorrent, EngineWire} {
		t.Run(e.String(), func(t *testing.T) {
			t.Parallel()
			net := localnet.ForTest(t, localnet.Config{Nodes: 8})
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			node := func() *dht.Node { return addNode(ctx, t, net) }
			sn := node()
			s, b := seeder(t, map[string]int64{"app": 2 << 20}, Config{DHT: sn, Engine: e})
			if s.Addr().Port() != sn.Addr().Port() {
				t.Errorf("seeder listens on %v, its DHT node on %v", s.Addr(), sn.Addr())
			}
			l := newClient(t, Config{DHT: node(), Engine: e})
			res, err := l.Fetch(ctx, FetchRequest{Key: testKey(t), Release: b.Release(testTime)})
			if err != nil {
				t.Fatal(err)
			}
			checkFetched(t, b, res)
		})
	}
}

// addNode adds a node to a local DHT network, closed when t ends, whose
// port number is free for TCP too: a client given the node listens for
// peers on that number. The system chose the node's UDP port, and on a
// machine busy with connections on loopback the same number was taken for
// TCP ("failed to listen for peers: bind: address already in use") in 2
// runs of TestFetchDHT in 6, and in TestSeedDialsPeersFromDHT; relay.Open
// listens on another port then, but these tests check the shared number.
func addNode(ctx context.Context, t testing.TB, ln *localnet.Net) *dht.Node {
	t.Helper()
	for range 20 {
		n, err := ln.Add(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", n.Addr().String())
		if err == nil {
			l.Close()
			t.Cleanup(func() { n.Close() })
			return n
		}
		n.Close()
	}
	t.Fatal("20 DHT nodes, each on a port number taken for TCP")
	return nil
}
