package record

import (
	"bytes"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/relay-sh/relay/signer"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata")

// fixedKey returns the private key whose seed is 32 bytes of b.
func fixedKey(t testing.TB, b byte) *signer.PrivateKey {
	t.Helper()
	k, err := signer.NewPrivateKey(bytes.Repeat([]byte{b}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// fixedNow is the clock of the vectors: 2026-11-01T00:00:00Z.
var fixedNow = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

func testRelease(channel, version string) Release {
	return Release{
		Channel:  channel,
		Version:  MustParseVersion(version),
		Infohash: Infohash{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12},
		Manifest: SHA256([]byte(channel + version)),
		Size:     123456789,
		Expires:  fixedNow.Add(30 * 24 * time.Hour),
		WebSeeds: []string{"https://example.com/releases/" + strings.ReplaceAll(version, ".", "_") + "/"},
	}
}

func mustSetRelease(t testing.TB, k signer.PublicKey, old []byte, r Release) []byte {
	t.Helper()
	b, err := SetRelease(k, old, r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustSign(t testing.TB, k *signer.PrivateKey, seq int64, packet []byte) *SignedPacket {
	t.Helper()
	p, err := Sign(k, seq, packet)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
