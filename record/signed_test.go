package record

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/relay-sh/relay/signer"
)

type bep44Vectors struct {
	BEP44 struct {
		PublicKey     string `json:"public_key"`
		Seq           int64  `json:"seq"`
		V             string `json:"v"`
		SigningBuffer string `json:"signing_buffer"`
		Signature     string `json:"signature"`
		Target        string `json:"target"`
	} `json:"bep44"`
	DIDDHT struct {
		Seed      string `json:"seed"`
		PublicKey string `json:"public_key"`
		Seq       int64  `json:"seq"`
		V         string `json:"v"`
		Signature string `json:"signature"`
	} `json:"did_dht"`
}

func loadBEP44(t *testing.T) bep44Vectors {
	t.Helper()
	data, err := os.ReadFile("testdata/bep44.json")
	if err != nil {
		t.Fatal(err)
	}
	var v bep44Vectors
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBEP44Vector(t *testing.T) {
	v := loadBEP44(t).BEP44
	if got := string(SigningBuffer(v.Seq, []byte(v.V))); got != v.SigningBuffer {
		t.Fatalf("SigningBuffer = %q, want %q", got, v.SigningBuffer)
	}
	var key signer.PublicKey
	copy(key[:], unhex(t, v.PublicKey))
	if got := Target(key); hex.EncodeToString(got[:]) != v.Target {
		t.Fatalf("Target = %x, want %s", got, v.Target)
	}
	p := &SignedPacket{Key: key, Seq: v.Seq, Packet: []byte(v.V)}
	copy(p.Sig[:], unhex(t, v.Signature))
	if err := p.Verify(); err != nil {
		t.Fatalf("BEP 44's signature does not verify: %v", err)
	}
	// The same packet through the pkarr relay body.
	back, err := ParseBody(key, p.Body())
	if err != nil {
		t.Fatal(err)
	}
	if back.Seq != p.Seq || back.Sig != p.Sig || !bytes.Equal(back.Packet, p.Packet) {
		t.Fatal("relay body round trip changed the packet")
	}
}

func TestDIDDHTKnownVector(t *testing.T) {
	v := loadBEP44(t).DIDDHT
	k, err := signer.NewPrivateKey(unhex(t, v.Seed))
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(k.PublicKey().Ed25519()); got != v.PublicKey {
		t.Fatalf("public key %s, want %s", got, v.PublicKey)
	}
	p := mustSign(t, k, v.Seq, []byte(v.V))
	if got := hex.EncodeToString(p.Sig[:]); got != v.Signature {
		t.Fatalf("signature %s, want %s", got, v.Signature)
	}
}

func TestSignRefuses(t *testing.T) {
	k := fixedKey(t, 1)
	if _, err := Sign(k, 1, make([]byte, MaxPacketSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("997 bytes: %v, want ErrTooLarge", err)
	}
	if _, err := Sign(k, 1, make([]byte, MaxPacketSize)); err != nil {
		t.Fatalf("996 bytes: %v", err)
	}
	if _, err := Sign(k, -1, nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("negative seq: %v", err)
	}
}

func TestVerifyRefusesEveryFlippedBit(t *testing.T) {
	k := fixedKey(t, 2)
	packet := mustSetRelease(t, k.PublicKey(), nil, testRelease("stable", "1.0.0"))
	body := mustSign(t, k, fixedNow.UnixMicro(), packet).Body()
	if _, err := ParseBody(k.PublicKey(), body); err != nil {
		t.Fatal(err)
	}
	for i := range len(body) * 8 {
		b := bytes.Clone(body)
		b[i/8] ^= 1 << (i % 8)
		if _, err := ParseBody(k.PublicKey(), b); err == nil {
			t.Fatalf("bit %d flipped: accepted", i)
		}
	}
	if _, err := ParseBody(fixedKey(t, 3).PublicKey(), body); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("wrong key: %v, want ErrBadSignature", err)
	}
	if _, err := ParseBody(k.PublicKey(), body[:71]); !errors.Is(err, ErrMalformed) {
		t.Fatalf("short body: %v, want ErrMalformed", err)
	}
}

func TestNextSeq(t *testing.T) {
	now := fixedNow
	if got := NextSeq(now, 0); got != now.UnixMicro() {
		t.Fatalf("no current: %d", got)
	}
	ahead := now.Add(time.Hour).UnixMicro()
	if got := NextSeq(now, ahead); got != ahead+1 {
		t.Fatalf("current ahead of clock: %d, want %d", got, ahead+1)
	}
}

// packetVector is relay's own vector: a fixed key, release and seq give
// fixed bytes.
type packetVector struct {
	Seed   string `json:"seed"`
	Key    string `json:"key"`
	Seq    int64  `json:"seq"`
	Packet string `json:"packet"`
	Sig    string `json:"signature"`
	Body   string `json:"relay_body"`
}

func TestRelayPacketVector(t *testing.T) {
	k := fixedKey(t, 0x2a)
	packet := mustSetRelease(t, k.PublicKey(), nil, testRelease("stable", "1.4.2"))
	packet = mustSetRelease(t, k.PublicKey(), packet, testRelease("beta", "2.0.0-rc.1"))
	p := mustSign(t, k, fixedNow.UnixMicro(), packet)
	got := packetVector{
		Seed:   hex.EncodeToString(k.Seed()),
		Key:    k.PublicKey().String(),
		Seq:    p.Seq,
		Packet: hex.EncodeToString(p.Packet),
		Sig:    hex.EncodeToString(p.Sig[:]),
		Body:   hex.EncodeToString(p.Body()),
	}
	const golden = "testdata/relay-packet.json"
	if *update {
		b, _ := json.MarshalIndent(got, "", "  ")
		if err := os.WriteFile(golden, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	var want packetVector
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("packet vector changed:\n got %+v\nwant %+v", got, want)
	}
	// And the stored vector reads back as both releases.
	body := unhex(t, want.Body)
	key, _ := signer.ParsePublicKey(want.Key)
	sp, err := ParseBody(key, body)
	if err != nil {
		t.Fatal(err)
	}
	for ch, v := range map[string]string{"stable": "1.4.2", "beta": "2.0.0-rc.1"} {
		r, err := FindRelease(key, sp.Packet, ch)
		if err != nil {
			t.Fatal(err)
		}
		if r.Version.String() != v {
			t.Fatalf("%s: version %s, want %s", ch, r.Version, v)
		}
	}
}
