package dht

import (
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"testing"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"
)

// TestReadOnlyWriter: until a node knows it is reachable, every KRPC
// message it sends says "ro":1 and is otherwise the same message (a BEP 44
// put keeps the value its signature covers); once it knows, its messages
// go out byte for byte.
func TestReadOnlyWriter(t *testing.T) {
	a, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	n := &Node{}
	w := roWriter{a, n}
	seq := int64(1700000000000000)
	tok := "token"
	put := krpc.Msg{T: "aa", Y: "q", Q: "put", A: &krpc.MsgArgs{
		ID: krpc.ID{1}, Token: tok, V: bencode.Bytes("12:some payload"), Seq: &seq, K: [32]byte{2}, Sig: [64]byte{3},
	}}
	reply := krpc.Msg{T: "bb", Y: "r", R: &krpc.Return{ID: krpc.ID{4}, Token: &tok, Bep44Return: krpc.Bep44Return{
		V: bencode.Bytes("3:abc"), Seq: &seq, K: [32]byte{5}, Sig: [64]byte{6},
	}}}
	send := func(m krpc.Msg) (sent, got []byte) {
		t.Helper()
		sent, err := bencode.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if k, err := w.WriteTo(sent, b.LocalAddr()); err != nil || k != len(sent) {
			t.Fatalf("WriteTo: %d of %d, %v", k, len(sent), err)
		}
		buf := make([]byte, 2048)
		k, _, err := b.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		return sent, buf[:k]
	}
	for _, m := range []krpc.Msg{put, reply} {
		_, got := send(m)
		var dec krpc.Msg
		if err := bencode.Unmarshal(got, &dec); err != nil {
			t.Fatal(err)
		}
		if !dec.ReadOnly {
			t.Errorf("%s %s: sent without ro while not known to be reachable", m.Y, m.Q)
		}
		dec.ReadOnly = false
		again, _ := bencode.Marshal(dec)
		want, _ := bencode.Marshal(m)
		if !bytes.Equal(again, want) {
			t.Errorf("%s %s changed on the way:\n got %q\nwant %q", m.Y, m.Q, again, want)
		}
	}
	n.reachable.Store(true)
	if sent, got := send(put); !bytes.Equal(sent, got) {
		t.Errorf("a reachable node's put changed on the way:\n got %q\nsent %q", got, sent)
	}
}

// TestReachableOverride: a node seen at an address that is not its own
// takes itself for one behind NAT and says it is read-only, unless it was
// told it is reachable there (a forwarded port, one-to-one NAT).
func TestReachableOverride(t *testing.T) {
	seenAt := krpc.NodeAddr{IP: net.IPv4(203, 0, 113, 7), Port: 6881}
	for _, reachable := range []bool{false, true} {
		n := &Node{
			cfg:   Config{Reachable: reachable},
			log:   slog.New(slog.DiscardHandler),
			local: map[netip.Addr]bool{netip.MustParseAddr("10.0.0.5"): true},
		}
		n.reachable.Store(reachable)
		for range 3 {
			if n.external.add(seenAt) {
				n.checkReachable()
			}
		}
		if got := n.ExternalIP(); got != netip.MustParseAddr("203.0.113.7") {
			t.Fatalf("ExternalIP = %v", got)
		}
		if n.reachable.Load() != reachable {
			t.Errorf("Reachable=%v: node reachable=%v after answers naming another address", reachable, n.reachable.Load())
		}
	}
}
