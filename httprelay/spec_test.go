package httprelay_test

import (
	"bytes"
	"encoding/hex"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/relay-sh/relay/dht/localnet"
	"github.com/relay-sh/relay/httprelay"
	"github.com/relay-sh/relay/internal/relaytest"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
)

// specVector reads the body of docs/spec/http-relay.md's vector: the
// indented hex lines after "## Vector".
func specVector(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../docs/spec/http-relay.md")
	if err != nil {
		t.Fatal(err)
	}
	_, vec, ok := strings.Cut(string(b), "## Vector")
	if !ok {
		t.Fatal("the spec has no vector")
	}
	var h strings.Builder
	for _, l := range strings.Split(vec, "\n") {
		if strings.HasPrefix(l, "    ") {
			h.WriteString(strings.TrimSpace(l))
		}
	}
	body, err := hex.DecodeString(h.String())
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// TestSpecVector: the spec's vector is the body relay signs for its
// inputs, and relay's server answers it byte for byte once stored.
func TestSpecVector(t *testing.T) {
	t.Parallel()
	want := specVector(t)
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = byte(i)
	}
	k, err := signer.NewPrivateKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	if k.PublicKey().String() != "yqooxx9u3aemh8mo5wcqq16yufu6jitouq1o4za751dger1igghy" {
		t.Fatalf("key %s", k.PublicKey())
	}
	ih, _ := record.ParseInfohash("8731b8987462fcf7a9a103530cf7732af34165d1")
	m, _ := record.ParseDigest("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
	r := record.Release{Channel: "stable", Version: record.MustParseVersion("1.0.0"), Infohash: ih, Manifest: m, Size: 4242, Expires: time.Unix(1900000000, 0).UTC()}
	packet, err := record.SetRelease(k.PublicKey(), nil, r)
	if err != nil {
		t.Fatal(err)
	}
	p, err := record.Sign(k, 1765000000000000, packet)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p.Body(), want) {
		t.Fatalf("relay signs\n%x\nthe spec says\n%x", p.Body(), want)
	}

	ln := localnet.ForTest(t, localnet.Config{Nodes: 4})
	_, url := relaytest.HTTPRelay(t, httprelay.ServerConfig{DHT: ln.Nodes[0]})
	u := url + "/" + k.PublicKey().String()
	if resp, b := do(t, http.MethodPut, u, want); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PUT: %s %s", resp.Status, b)
	}
	if resp, b := do(t, http.MethodGet, u, nil); resp.StatusCode != http.StatusOK || !bytes.Equal(b, want) {
		t.Fatalf("GET: %s\n%x", resp.Status, b)
	}
}
