package record

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// TestRolloutRecord: ro and crit round-trip through the TXT record, ro=100
// reads as every machine, and a reader refuses a rollout out of range.
func TestRolloutRecord(t *testing.T) {
	k := fixedKey(t, 1).PublicKey()
	r := testRelease("stable", "1.4.2")
	r.Rollout, r.Critical = 10, true
	got, err := FindRelease(k, mustSetRelease(t, k, nil, r), "stable")
	if err != nil || got.Rollout != 10 || !got.Critical {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	base := []string{"v=1.0.0", "bt=0123456789abcdef0123456789abcdef01234567", "m=" + strings.Repeat("ab", 32), "n=10", "exp=1800000000"}
	for _, tc := range []struct {
		ro   string
		want int // -1: refused
	}{{"ro=1", 1}, {"ro=99", 99}, {"ro=100", 0}, {"ro=0", -1}, {"ro=101", -1}, {"ro=010", -1}, {"ro=ten", -1}} {
		got, err := parseTXT("stable", append(base[:len(base):len(base)], tc.ro))
		switch {
		case tc.want < 0 && err == nil:
			t.Errorf("%s: read as %d, want refused", tc.ro, got.Rollout)
		case tc.want >= 0 && (err != nil || got.Rollout != tc.want):
			t.Errorf("%s: %d, %v; want %d", tc.ro, got.Rollout, err, tc.want)
		}
	}
	r.Rollout = 100
	if _, err := r.TXT(k); err == nil {
		t.Error("a record with rollout 100 was written")
	}
}

// TestRolloutPlace: the vector of docs/spec/rollout.md; a fleet of 10000
// machines spreads over the places (10% takes a 10% rollout, within a
// point); every machine of a 10% rollout is in the 50% one; a critical
// release is taken by all.
func TestRolloutPlace(t *testing.T) {
	k := fixedKey(t, 1).PublicKey()
	v := MustParseVersion("1.4.2")
	secret := bytes.Repeat([]byte{2}, 32)
	place := RolloutPlace(secret, k, "stable", v)
	if k.String() != "tkrq8zmwb8a3m9k15csu3q17qmfgqnp9dskbrg9uq1rydpyxp7qy" || place != rolloutVector {
		t.Fatalf("vector: key %s, place %d, want %d", k, place, rolloutVector)
	}
	doc, err := os.ReadFile("../docs/spec/rollout.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{hex.EncodeToString(rolloutMAC(secret, k, "stable", v)), fmt.Sprintf("place **%d**", place),
		fmt.Sprintf("with `ro=%d` or more", place+1), fmt.Sprintf("not with `ro=%d` or less", place)} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("docs/spec/rollout.md does not show %q", want)
		}
	}
	// The record the document shows reads as a 10% critical release.
	i := strings.Index(string(doc), "stable._relay.")
	rr, err := dns.NewRR(strings.TrimSpace(strings.SplitN(string(doc)[i:], "\n", 2)[0]))
	if err != nil {
		t.Fatal(err)
	}
	if r, err := parseTXT("stable", rr.(*dns.TXT).Txt); err != nil || r.Rollout != 10 || !r.Critical {
		t.Fatalf("the document's record reads as %+v, %v", r, err)
	}
	r := testRelease("stable", "1.4.2")
	in10, in50 := 0, 0
	for i := range 10000 {
		secret := []byte{byte(i), byte(i >> 8), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}
		r.Rollout = 10
		t10 := r.Takes(secret, k)
		r.Rollout = 50
		t50 := r.Takes(secret, k)
		if t10 && !t50 {
			t.Fatalf("machine %d is in the 10%% rollout, not in the 50%% one", i)
		}
		if t10 {
			in10++
		}
		if t50 {
			in50++
		}
		r.Rollout, r.Critical = 10, true
		if !r.Takes(secret, k) {
			t.Fatalf("machine %d holds back a critical release", i)
		}
		r.Critical = false
	}
	if in10 < 900 || in10 > 1100 || in50 < 4800 || in50 > 5200 {
		t.Fatalf("of 10000 machines %d take a 10%% rollout and %d a 50%% one", in10, in50)
	}
}

// rolloutVector is the place of the vector in docs/spec/rollout.md.
const rolloutVector = 35
