package dht_test

import (
	"context"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"
	"github.com/relay-sh/relay/dht"
)

// TestJoinRetriesSilentLookup: a bootstrap node that answers the join's
// ping but not its first lookup in time (a loaded machine, a lost
// datagram) does not make the join fail: the lookup is tried again.
func TestJoinRetriesSilentLookup(t *testing.T) {
	b := listenOn(t, "127.0.0.1")
	to := b.conn.LocalAddr().String()
	done := make(chan struct{})
	defer close(done)
	go func() {
		buf := make([]byte, 65536)
		lookups := 0
		for {
			select {
			case <-done:
				return
			default:
			}
			b.conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			n, from, err := b.conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				continue
			}
			var m krpc.Msg
			if bencode.Unmarshal(buf[:n], &m) != nil || m.Y != "q" {
				continue
			}
			if m.Q == "find_node" {
				if lookups++; lookups == 1 {
					continue // the first lookup's query goes unanswered
				}
			}
			r, _ := bencode.Marshal(map[string]any{"t": m.T, "y": "r", "r": map[string]any{"id": b.id, "nodes": ""}})
			b.conn.WriteToUDPAddrPort(r, from)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := dht.New(ctx, dht.Config{Listen: "127.0.0.1:0", Bootstrap: []string{to}, ReadOnly: true, QueryTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatalf("join through a bootstrap node that missed one lookup: %v", err)
	}
	n.Close()
}
