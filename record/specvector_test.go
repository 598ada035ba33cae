package record

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"reflect"
	"testing"
	"time"

	"github.com/relay-sh/relay/internal/spectest"
)

// specRelease is the release of docs/spec/record.md: the bundle of
// docs/spec/bundle.md (transfer.TestBundleVector checks its infohash,
// manifest digest and size there), expiring 30 days after fixedNow.
func specRelease() Release {
	ih, _ := ParseInfohash("b7d935c77b9694a16cf93e1c68c625991e169bb3")
	m, _ := ParseDigest("65c5d4f19395f34eddcd53d4ffc948b1dc1440bc9611a7542ed5b1dce0ada50a")
	return Release{
		Channel:  "stable",
		Version:  MustParseVersion("1.4.2"),
		Infohash: ih,
		Manifest: m,
		Size:     600,
		Expires:  fixedNow.Add(30 * 24 * time.Hour),
		WebSeeds: []string{"https://example.com/relay/"},
	}
}

// TestRecordVector builds the test vector of docs/spec/record.md from its
// inputs (the key whose seed is 32 bytes of 0x01, specRelease, seq
// fixedNow) and checks that the spec shows the same key, target, record,
// packet, signed bytes, signature and bodies, and that the body reads
// back, through the watcher's checks, as the release it was made from.
func TestRecordVector(t *testing.T) {
	k := fixedKey(t, 1)
	r := specRelease()
	packet, err := SetRelease(k.PublicKey(), nil, r)
	if err != nil {
		t.Fatal(err)
	}
	p := mustSign(t, k, fixedNow.UnixMicro(), packet)
	txt, _ := r.TXT(k.PublicKey())
	target, pub := p.Target(), k.PublicKey()
	want := []string{
		k.PublicKey().String(),
		hex.EncodeToString(pub[:]),
		hex.EncodeToString(target[:]),
		txt.String(),
		hex.EncodeToString(packet),
		string(bytes.TrimSuffix(SigningBuffer(p.Seq, packet), packet)),
		hex.EncodeToString(p.Sig[:]),
		hex.EncodeToString(p.Body()),
		base64.StdEncoding.EncodeToString(p.Body()),
	}
	spectest.Check(t, "../docs/spec/record.md", want)

	back, err := ParseBody(k.PublicKey(), p.Body())
	if err != nil {
		t.Fatal(err)
	}
	got, err := Check(back, k.PublicKey(), "stable", Accepted{}, Policy{Now: fixedNow})
	if err != nil || !reflect.DeepEqual(got, r) {
		t.Fatalf("vector reads back as %+v, %v; want %+v", got, err, r)
	}
	// Any changed byte of the body fails its signature.
	for _, i := range []int{0, ed25519.SignatureSize, len(p.Body()) - 1} {
		bad := p.Body()
		bad[i] ^= 1
		if _, err := ParseBody(k.PublicKey(), bad); err == nil {
			t.Errorf("body with byte %d changed verifies", i)
		}
	}
	t.Logf("packet: %d bytes, body: %d bytes", len(packet), len(p.Body()))
}
