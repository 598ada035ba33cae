package record

import (
	"encoding/hex"
	"testing"
	"time"

	"github.com/relay-sh/relay/internal/spectest"
	"github.com/relay-sh/relay/signer"
)

// TestKeysVector builds the test vector of docs/spec/keys.md from its
// inputs (keys whose seeds are 32 bytes of 0x01 to 0x05) and checks that
// the spec shows the same keys, record and signed packet, and that the
// body it shows verifies and reads back as the delegation.
func TestKeysVector(t *testing.T) {
	root := fixedKey(t, 1)
	d := Delegation{
		Keys: []Delegate{
			{Key: fixedKey(t, 2).PublicKey()},
			{Key: fixedKey(t, 3).PublicKey()},
			{Key: fixedKey(t, 4).PublicKey(), Channels: []string{"beta"}},
		},
		Threshold: 2,
		Expires:   fixedNow.Add(365 * 24 * time.Hour),
		Revoked:   []signer.PublicKey{fixedKey(t, 5).PublicKey()},
	}
	packet, err := SetDelegation(root.PublicKey(), nil, d)
	if err != nil {
		t.Fatal(err)
	}
	p := mustSign(t, root, fixedNow.UnixMicro(), packet)
	txt, _ := d.TXT(root.PublicKey())
	want := []string{txt.String(), hex.EncodeToString(p.Body()), hex.EncodeToString(packet)}
	for b := byte(1); b <= 5; b++ {
		want = append(want, fixedKey(t, b).PublicKey().String())
	}
	spectest.Check(t, "../docs/spec/keys.md", want)
	back, err := ParseBody(root.PublicKey(), p.Body())
	if err != nil {
		t.Fatal(err)
	}
	got, ok, err := CheckDelegation(back, root.PublicKey(), 0, Policy{Now: fixedNow})
	if err != nil || !ok || len(got.Signers("stable")) != 2 || len(got.Signers("beta")) != 3 || !got.IsRevoked(fixedKey(t, 5).PublicKey()) {
		t.Fatalf("vector reads back as %+v, %v, %v", got, ok, err)
	}
	t.Logf("packet: %d bytes, body: %d bytes", len(packet), len(p.Body()))
}
