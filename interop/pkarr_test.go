package interop

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"testing"
	"time"

	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/dht/localnet"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/transfer"
)

// TestPkarrPacketFormat: the packet relay stores for a key with two
// channels decodes, in an independent DNS implementation (dns-packet), to
// the TXT records DESIGN.md describes, one per channel at
// <channel>._relay.<z32 key>, and the pkarr relay body is sig ‖ seq ‖ packet.
func TestPkarrPacketFormat(t *testing.T) {
	needNode(t)
	net := localnet.ForTest(t, localnet.Config{Nodes: 8})
	ctx := ctxFor(t, time.Minute)
	key := newKey(t)
	pub := client(t, net, false)
	stable, err := pub.Publish(ctx, relay.PublishOptions{
		Key: key, Version: record.MustParseVersion("1.4.2"),
		Sources: []transfer.Source{{Path: releaseDir(t, 100, 200)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	beta, err := pub.Publish(ctx, relay.PublishOptions{
		Key: key, Channel: "beta", Version: record.MustParseVersion("2.0.0-rc.1"),
		Sources:  []transfer.Source{{Path: releaseDir(t, 300)}},
		WebSeeds: []string{"https://mirror.example/relay/", "http://127.0.0.1:8080/b/"},
	})
	if err != nil {
		t.Fatal(err)
	}
	p := beta.Packet
	if len(p.Packet) > record.MaxPacketSize {
		t.Errorf("packet of %d bytes, over %d", len(p.Packet), record.MaxPacketSize)
	}

	var got item
	node(t, ctx, &got, "decode", hex.EncodeToString(p.Packet))
	if len(got.Answers) != 2 {
		t.Errorf("%d answers, want one per channel: %+v", len(got.Answers), got.Answers)
	}
	checkRecord(t, got.Answers, key.PublicKey(), stable.Release)
	checkRecord(t, got.Answers, key.PublicKey(), beta.Release)

	// The pkarr relay body, by hand.
	body := make([]byte, 0, 72+len(p.Packet))
	body = append(body, p.Sig[:]...)
	body = binary.BigEndian.AppendUint64(body, uint64(p.Seq))
	body = append(body, p.Packet...)
	if !bytes.Equal(p.Body(), body) {
		t.Errorf("pkarr body\n %x\nwant sig ‖ seq ‖ packet\n %x", p.Body(), body)
	}
	// seq is the time of signing in microseconds.
	if d := time.Since(time.UnixMicro(p.Seq)); d < 0 || d > time.Minute {
		t.Errorf("seq %d is %v from now: not the signing time in microseconds", p.Seq, d)
	}
}
