package interop

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/dht/localnet"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/transfer"
)

// TestPkarrPacketFormat: the packet relay stores for a key with two
// channels decodes, in an independent DNS implementation (dns-packet), to
// the TXT records docs/spec/record.md describes, one per channel at
// <channel>._relay.<z32 key>, and the pkarr relay body is sig ‖ seq ‖ packet.
func TestPkarrPacketFormat(t *testing.T) {
	needNode(t)
	net := localnet.ForTest(t, localnet.Config{Nodes: 8})
	ctx := ctxFor(t, time.Minute)
	key := newKey(t)
	stable, beta := publishTwoChannels(t, ctx, net, key)
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

// publishTwoChannels publishes stable 1.4.2 and beta 2.0.0-rc.1 (with two
// web seeds) under key with a relay client on net; the beta one's packet
// holds both records.
func publishTwoChannels(t *testing.T, ctx context.Context, net *localnet.Net, key *signer.PrivateKey) (stable, beta *relay.Published) {
	t.Helper()
	pub := client(t, net, false)
	stable, err := pub.Publish(ctx, relay.PublishOptions{
		Key: key, Version: record.MustParseVersion("1.4.2"),
		Sources: []transfer.Source{{Path: releaseDir(t, 100, 200)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	beta, err = pub.Publish(ctx, relay.PublishOptions{
		Key: key, Channel: "beta", Version: record.MustParseVersion("2.0.0-rc.1"),
		Sources:  []transfer.Source{{Path: releaseDir(t, 300)}},
		WebSeeds: []string{"https://mirror.example/relay/", "http://127.0.0.1:8080/b/"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return stable, beta
}

// pkarrView is what pkarr.js prints: a signed packet pkarr's own code read
// and verified (or signed and stored), with the TXT records it finds at each
// name asked for.
type pkarrView struct {
	Key     string              `json:"key"`
	Seq     int64               `json:"seq"`
	Body    string              `json:"body"`
	Nodes   int                 `json:"nodes"`
	Records map[string][]answer `json:"records"`
}

// TestPkarrResolvesRelayRecord: pkarr's own implementation (npm pkarr)
// resolves the packet relay stored for a key with two channels, verifies
// it, writes the key as relay does, and finds each channel's record under
// the names a pkarr user would ask for, relative or absolute; it reads
// relay's pkarr relay body too.
func TestPkarrResolvesRelayRecord(t *testing.T) {
	needNode(t)
	net := localnet.ForTest(t, localnet.Config{Nodes: 16})
	ctx := ctxFor(t, time.Minute)
	key := newKey(t)
	stable, beta := publishTwoChannels(t, ctx, net, key)
	p := beta.Packet
	stableName, betaName := "stable._relay", "beta._relay."+key.PublicKey().String()+"."

	var got pkarrView
	nodeScript(t, ctx, &got, "pkarr.js", "resolve", net.Bootstrap.Addr().String(), key.PublicKey().String(), stableName, betaName)
	checkPkarrView(t, got, key.PublicKey(), p)
	checkRecord(t, got.Records[stableName], key.PublicKey(), stable.Release)
	checkRecord(t, got.Records[betaName], key.PublicKey(), beta.Release)
	if got.Nodes == 0 {
		t.Error("pkarr counted no node that served the packet")
	}

	var fromBody pkarrView
	nodeScript(t, ctx, &fromBody, "pkarr.js", "body", key.PublicKey().String(), hex.EncodeToString(p.Body()), stableName)
	checkPkarrView(t, fromBody, key.PublicKey(), p)
	checkRecord(t, fromBody.Records[stableName], key.PublicKey(), stable.Release)
}

// checkPkarrView fails t unless pkarr read the signed packet p of key.
func checkPkarrView(t *testing.T, got pkarrView, key signer.PublicKey, p *record.SignedPacket) {
	t.Helper()
	if got.Key != key.String() {
		t.Errorf("pkarr writes the key %s, relay %s", got.Key, key)
	}
	if got.Seq != p.Seq {
		t.Errorf("pkarr read seq %d, relay signed %d", got.Seq, p.Seq)
	}
	if got.Body != hex.EncodeToString(p.Body()) {
		t.Errorf("pkarr's body\n %s\nrelay's\n %x", got.Body, p.Body())
	}
}

// TestRelayResolvesPkarrRecord: relay resolves a release record that pkarr
// signed and stored, written as a pkarr user writes names (relative to the
// key); a release relay then publishes on another channel keeps pkarr's
// other records, which pkarr still finds.
func TestRelayResolvesPkarrRecord(t *testing.T) {
	needNode(t)
	net := localnet.ForTest(t, localnet.Config{Nodes: 16})
	ctx := ctxFor(t, time.Minute)
	key := newKey(t)
	want := betaRelease()
	records, _ := json.Marshal([]map[string]any{
		{"name": "beta._relay", "data": txt(want)},
		{"name": "_other", "data": []string{"not relay's"}},
	})
	var put pkarrView
	nodeScript(t, ctx, &put, "pkarr.js", "publish", net.Bootstrap.Addr().String(), hex.EncodeToString(key.Seed()), string(records))
	if put.Key != key.PublicKey().String() {
		t.Fatalf("pkarr derived the key %s from the seed, relay %s", put.Key, key.PublicKey())
	}
	if put.Nodes == 0 {
		t.Fatal("pkarr stored the packet on no node")
	}

	r, err := client(t, net, true).Resolve(ctx, key.PublicKey(), "beta")
	if err != nil {
		t.Fatal(err)
	}
	if r.Packet.Seq != put.Seq {
		t.Errorf("relay resolved seq %d, pkarr signed %d", r.Packet.Seq, put.Seq)
	}
	sameRelease(t, r.Release, want)

	stable, err := client(t, net, false).Publish(ctx, relay.PublishOptions{
		Key: key, Version: record.MustParseVersion("1.0.0"),
		Sources: []transfer.Source{{Path: releaseDir(t, 100)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got pkarrView
	nodeScript(t, ctx, &got, "pkarr.js", "resolve", net.Bootstrap.Addr().String(), key.PublicKey().String(), "stable._relay", "beta._relay", "_other")
	checkPkarrView(t, got, key.PublicKey(), stable.Packet)
	checkRecord(t, got.Records["stable._relay"], key.PublicKey(), stable.Release)
	checkRecord(t, got.Records["beta._relay"], key.PublicKey(), want)
	if o := got.Records["_other"]; len(o) != 1 || !slices.Equal(o[0].Data, []string{"not relay's"}) {
		t.Errorf("pkarr's own record after relay published: %+v, want its one TXT string kept", o)
	}
}

// TestPkarrReadsDelegation: a root's delegation (docs/spec/keys.md) is a
// plain pkarr signed packet: pkarr's own code reads its body, verifies
// its signature, and finds at _keys._relay the TXT record relay wrote,
// with each release key, its channels, the threshold and the revoked key.
func TestPkarrReadsDelegation(t *testing.T) {
	needNode(t)
	ctx := ctxFor(t, time.Minute)
	root, a, b, gone := newKey(t), newKey(t), newKey(t), newKey(t)
	d := record.Delegation{
		Keys:      []record.Delegate{{Key: a.PublicKey()}, {Key: b.PublicKey(), Channels: []string{"beta"}}},
		Threshold: 2,
		Expires:   time.Now().Add(time.Hour).Truncate(time.Second),
		Revoked:   []signer.PublicKey{gone.PublicKey()},
	}
	packet, err := record.SetDelegation(root.PublicKey(), nil, d)
	if err != nil {
		t.Fatal(err)
	}
	p, err := record.Sign(root, record.NextSeq(time.Now(), 0), packet)
	if err != nil {
		t.Fatal(err)
	}
	const name = "_keys._relay"
	var got pkarrView
	nodeScript(t, ctx, &got, "pkarr.js", "body", root.PublicKey().String(), hex.EncodeToString(p.Body()), name)
	checkPkarrView(t, got, root.PublicKey(), p)
	recs := got.Records[name]
	if len(recs) != 1 {
		t.Fatalf("pkarr found %d records at %s, want the delegation: %+v", len(recs), name, got.Records)
	}
	for _, want := range []string{
		"t=2",
		"k=" + a.PublicKey().String(),
		"k=" + b.PublicKey().String() + ":beta",
		"rv=" + gone.PublicKey().String(),
	} {
		if !slices.Contains(recs[0].Data, want) {
			t.Errorf("pkarr read %q, without %q", recs[0].Data, want)
		}
	}
}
