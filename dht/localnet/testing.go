package localnet

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"
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

// ItemNode starts a raw KRPC responder on 127.0.0.1 with node ID id that
// answers every get with item and every other query with its ID alone,
// naming no other node, and returns its address. It stops when the test
// ends. Tests use it to play a DHT node that serves a forged or malformed
// BEP 44 item.
func ItemNode(tb testing.TB, id [20]byte, item krpc.Bep44Return) string {
	tb.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			var q krpc.Msg
			if bencode.Unmarshal(buf[:n], &q) != nil || q.Y != "q" {
				continue
			}
			ret := krpc.Return{ID: id}
			if q.Q == "get" {
				tok := "token"
				ret.Token = &tok
				ret.Bep44Return = item
			}
			if b, err := bencode.Marshal(krpc.Msg{T: q.T, Y: "r", R: &ret}); err == nil {
				conn.WriteTo(b, from)
			}
		}
	})
	tb.Cleanup(func() {
		conn.Close()
		wg.Wait()
	})
	return conn.LocalAddr().String()
}
