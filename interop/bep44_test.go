package interop

import (
	"encoding/hex"
	"encoding/json"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/dht/localnet"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/transfer"
)

// item is what bep44.js and lt.py print: a BEP 44 mutable item they read
// and verified, or stored, with its DNS packet decoded (by dns-packet in
// bep44.js, by hand in lt.py); Key is the public key lt.py put derived.
type item struct {
	Key     string   `json:"key"`
	Target  string   `json:"target"`
	Seq     int64    `json:"seq"`
	Sig     string   `json:"sig"`
	V       string   `json:"v"`
	Nodes   int      `json:"nodes"`
	Answers []answer `json:"answers"`
}

type answer struct {
	Name  string   `json:"name"`
	Type  string   `json:"type"`
	Class string   `json:"class"`
	TTL   int      `json:"ttl"`
	Data  []string `json:"data"`
}

// txt returns the character-strings docs/spec/record.md says the record of r holds.
func txt(r record.Release) []string {
	s := []string{
		"v=" + r.Version.String(),
		"bt=" + r.Infohash.String(),
		"m=" + r.Manifest.String(),
		"n=" + strconv.FormatInt(r.Size, 10),
		"exp=" + strconv.FormatInt(r.Expires.Unix(), 10),
	}
	for _, ws := range r.WebSeeds {
		s = append(s, "ws="+ws)
	}
	return s
}

// checkRecord fails t unless answers hold exactly one TXT record for r's
// channel, at <channel>._relay.<key>, with the strings of r in any order.
func checkRecord(t *testing.T, answers []answer, key signer.PublicKey, r record.Release) {
	t.Helper()
	owner := r.Channel + "._relay." + key.String()
	var found []answer
	for _, a := range answers {
		if a.Name == owner {
			found = append(found, a)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d records at %s in %+v, want 1", len(found), owner, answers)
	}
	a := found[0]
	if a.Type != "TXT" || a.Class != "IN" {
		t.Errorf("record at %s is %s %s, want IN TXT", owner, a.Class, a.Type)
	}
	got, want := slices.Clone(a.Data), txt(r)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("TXT strings at %s:\n got %q\nwant %q", owner, got, want)
	}
}

// TestBEP44ReadsRelayRecord: an independent BEP 44 implementation finds the
// item relay stored, checks its signature itself, and sees the same packet.
func TestBEP44ReadsRelayRecord(t *testing.T) {
	needNode(t)
	net := localnet.ForTest(t, localnet.Config{Nodes: 16})
	ctx := ctxFor(t, time.Minute)
	key := newKey(t)
	pub := client(t, net, false)
	p, err := pub.Publish(ctx, relay.PublishOptions{
		Key: key, Version: record.MustParseVersion("1.4.2"),
		Sources: []transfer.Source{{Path: releaseDir(t, 1000)}},
	})
	if err != nil {
		t.Fatal(err)
	}

	var got item
	node(t, ctx, &got, "get", net.Bootstrap.Addr().String(), hex.EncodeToString(key.PublicKey().Ed25519()))
	sameItem(t, got, p.Packet)
	checkRecord(t, got.Answers, key.PublicKey(), p.Release)
}

// sameItem fails t unless got, the item another implementation read, is
// the signed packet p relay stored: its target, seq, signature and v.
func sameItem(t *testing.T, got item, p *record.SignedPacket) {
	t.Helper()
	target := p.Target()
	if got.Target != hex.EncodeToString(target[:]) {
		t.Errorf("target %s, relay's %x", got.Target, target)
	}
	if got.Seq != p.Seq {
		t.Errorf("seq %d, relay's %d", got.Seq, p.Seq)
	}
	if got.Sig != hex.EncodeToString(p.Sig[:]) {
		t.Errorf("signature %s, relay's %x", got.Sig, p.Sig)
	}
	if got.V != hex.EncodeToString(p.Packet) {
		t.Errorf("packet\n %s\nrelay's\n %x", got.V, p.Packet)
	}
}

// TestRelayResolvesBEP44Record: relay resolves and reads a packet that the
// independent implementation built (dns-packet), signed (Node's ed25519)
// and stored (bittorrent-dht).
func TestRelayResolvesBEP44Record(t *testing.T) {
	needNode(t)
	net := localnet.ForTest(t, localnet.Config{Nodes: 16})
	ctx := ctxFor(t, time.Minute)
	key := newKey(t)
	want := betaRelease()
	seq := time.Now().UnixMicro()
	records, _ := json.Marshal([]map[string]any{
		{"name": "beta._relay." + key.PublicKey().String(), "data": txt(want)},
		{"name": "_other." + key.PublicKey().String(), "data": []string{"not relay's"}},
	})
	var put item
	node(t, ctx, &put, "put", net.Bootstrap.Addr().String(), hex.EncodeToString(key.Seed()),
		strconv.FormatInt(seq, 10), string(records))
	if put.Nodes == 0 {
		t.Fatal("bittorrent-dht stored the item on no node")
	}

	r, err := client(t, net, true).Resolve(ctx, key.PublicKey(), "beta")
	if err != nil {
		t.Fatal(err)
	}
	if r.Packet.Seq != seq || hex.EncodeToString(r.Packet.Packet) != put.V {
		t.Errorf("relay resolved seq %d packet %x, bittorrent-dht stored seq %d packet %s",
			r.Packet.Seq, r.Packet.Packet, seq, put.V)
	}
	sameRelease(t, r.Release, want)
}

// betaRelease is a release of channel beta with every field of the record
// set, two web seeds, expiring in a day.
func betaRelease() record.Release {
	ih, _ := record.ParseInfohash("8731b8987462fcf7a9a103530cf7732af34165d1")
	m, _ := record.ParseDigest("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
	return record.Release{
		Channel: "beta", Version: record.MustParseVersion("2.0.0-rc.1"),
		Infohash: ih, Manifest: m, Size: 31457901,
		Expires:  time.Now().Add(24 * time.Hour).Truncate(time.Second),
		WebSeeds: []string{"https://example.org/a/", "https://example.org/b/"},
	}
}

// sameRelease fails t unless relay read the release want as got.
func sameRelease(t *testing.T, got, want record.Release) {
	t.Helper()
	if got.Channel != want.Channel || got.Version.Compare(want.Version) != 0 || got.Infohash != want.Infohash ||
		got.Manifest != want.Manifest || got.Size != want.Size || !got.Expires.Equal(want.Expires) ||
		!slices.Equal(got.WebSeeds, want.WebSeeds) {
		t.Errorf("relay read\n %+v\nfrom the packet of\n %+v", got, want)
	}
}
