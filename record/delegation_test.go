package record

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/relay-sh/relay/signer"
)

func testDelegation(t testing.TB, threshold int, keys ...byte) Delegation {
	d := Delegation{Threshold: threshold, Expires: fixedNow.Add(365 * 24 * time.Hour)}
	for _, b := range keys {
		d.Keys = append(d.Keys, Delegate{Key: fixedKey(t, b).PublicKey()})
	}
	return d
}

func TestDelegationRoundTrip(t *testing.T) {
	root := fixedKey(t, 1).PublicKey()
	d := testDelegation(t, 2, 2, 3, 4)
	d.Keys[2].Channels = []string{"beta", "nightly"}
	d.Revoked = []signer.PublicKey{fixedKey(t, 5).PublicKey()}
	d.Next = fixedKey(t, 6).PublicKey()
	// A release record of the root's stays beside the delegation.
	old := mustSetRelease(t, root, nil, testRelease("stable", "1.0.0"))
	packet, err := SetDelegation(root, old, d)
	if err != nil {
		t.Fatal(err)
	}
	got, ok, err := FindDelegation(root, packet)
	if err != nil || !ok {
		t.Fatalf("FindDelegation: %v, %v", ok, err)
	}
	a, _ := d.TXT(root)
	b, _ := got.TXT(root)
	if a.String() != b.String() {
		t.Fatalf("delegation changed:\n%v\n%v", a, b)
	}
	if _, err := FindRelease(root, packet, "stable"); err != nil {
		t.Fatalf("the root's release record was lost: %v", err)
	}
	// Replacing the delegation keeps one delegation record.
	d.Threshold = 1
	packet, err = SetDelegation(root, packet, d)
	if err != nil {
		t.Fatal(err)
	}
	if got, _, err := FindDelegation(root, packet); err != nil || got.Threshold != 1 {
		t.Fatalf("replaced delegation: %+v, %v", got, err)
	}
	// The delegation record is no channel.
	if chs, _ := Channels(root, packet); strings.Join(chs, ",") != "stable" {
		t.Fatalf("channels %v", chs)
	}
	// A packet with none: ok false, no error.
	if _, ok, err := FindDelegation(root, old); ok || err != nil {
		t.Fatalf("no delegation: %v, %v", ok, err)
	}
	if got := d.Signers("stable"); len(got) != 2 {
		t.Fatalf("signers of stable: %v", got)
	}
	if got := d.Signers("beta"); len(got) != 3 {
		t.Fatalf("signers of beta: %v", got)
	}
}

// TestDelegationFits: the most keys a delegation may name fit in one
// packet; so do 14 and a successor, and 8 keys and 7 revoked ones; one
// key more does not.
func TestDelegationFits(t *testing.T) {
	root := fixedKey(t, 1).PublicKey()
	d := testDelegation(t, MaxKeys, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24)
	if _, err := SetDelegation(root, nil, d); err != nil {
		t.Fatal(err)
	}
	d.Keys = d.Keys[1:]
	d.Threshold = 2
	d.Next = fixedKey(t, 2).PublicKey()
	if _, err := SetDelegation(root, nil, d); err != nil {
		t.Fatal(err)
	}
	d.Revoked = []signer.PublicKey{fixedKey(t, 3).PublicKey(), fixedKey(t, 4).PublicKey()}
	if _, err := SetDelegation(root, nil, d); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("one key more: %v", err)
	}
	d = testDelegation(t, 2, 10, 11, 12, 13, 14, 15, 16, 17)
	for b := byte(30); b < 37; b++ {
		d.Revoked = append(d.Revoked, fixedKey(t, b).PublicKey())
	}
	if _, err := SetDelegation(root, nil, d); err != nil {
		t.Fatal(err)
	}
}

func TestDelegationInvalid(t *testing.T) {
	k2 := fixedKey(t, 2).PublicKey()
	for _, tc := range []struct {
		name string
		d    func(d *Delegation)
		want string
	}{
		{"no expiry", func(d *Delegation) { d.Expires = time.Time{} }, "no expiry"},
		{"no keys", func(d *Delegation) { d.Keys = nil }, "no release key and no successor"},
		{"threshold 0", func(d *Delegation) { d.Threshold = 0 }, "threshold 0 of 2"},
		{"threshold above keys", func(d *Delegation) { d.Threshold = 3 }, "threshold 3 of 2"},
		{"key twice", func(d *Delegation) { d.Keys[1] = d.Keys[0] }, "twice"},
		{"named and revoked", func(d *Delegation) { d.Revoked = []signer.PublicKey{k2} }, "both names and revokes"},
		{"bad channel", func(d *Delegation) { d.Keys[0].Channels = []string{"Beta"} }, "channel"},
		{"revoked successor", func(d *Delegation) {
			d.Next = fixedKey(t, 9).PublicKey()
			d.Revoked = []signer.PublicKey{d.Next}
		}, "its own successor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := testDelegation(t, 1, 2, 3)
			tc.d(&d)
			err := d.Validate()
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrMalformed with %q", err, tc.want)
			}
		})
	}
}

// TestParseDelegation reads records as another implementation may write
// them: relative owners, unknown keys, and refuses malformed ones.
func TestParseDelegation(t *testing.T) {
	root := fixedKey(t, 1).PublicKey()
	k2, k3 := fixedKey(t, 2).PublicKey().String(), fixedKey(t, 3).PublicKey().String()
	for _, tc := range []struct {
		name  string
		owner string
		txt   []string
		want  string // "" for valid
	}{
		{"full", DelegationOwner(root), []string{"exp=1800000000", "t=1", "k=" + k2}, ""},
		{"relative", "_keys._relay.", []string{"exp=1800000000", "t=1", "k=" + k2}, ""},
		{"unknown key ignored", DelegationOwner(root), []string{"exp=1800000000", "t=1", "k=" + k2, "x=1", "junk"}, ""},
		{"channels", DelegationOwner(root), []string{"exp=1800000000", "t=2", "k=" + k2 + ":beta", "k=" + k3}, ""},
		{"successor only", DelegationOwner(root), []string{"exp=1800000000", "next=" + k3}, ""},
		{"no expiry", DelegationOwner(root), []string{"t=1", "k=" + k2}, "no \"exp\""},
		{"no threshold", DelegationOwner(root), []string{"exp=1800000000", "k=" + k2}, "no threshold"},
		{"exp twice", DelegationOwner(root), []string{"exp=1800000000", "exp=1900000000", "t=1", "k=" + k2}, "twice"},
		{"bad key", DelegationOwner(root), []string{"exp=1800000000", "t=1", "k=" + k2[:51]}, "z-base-32"},
		{"pk prefix", DelegationOwner(root), []string{"exp=1800000000", "t=1", "k=pk:" + k2}, "z-base-32"},
		{"huge threshold", DelegationOwner(root), []string{"exp=1800000000", "t=99999999999999999999", "k=" + k2}, "threshold"},
		{"threshold too high", DelegationOwner(root), []string{"exp=1800000000", "t=2", "k=" + k2}, "threshold 2 of 1"},
		{"same key twice", DelegationOwner(root), []string{"exp=1800000000", "t=2", "k=" + k2, "k=" + k2}, "twice"},
		{"empty channel", DelegationOwner(root), []string{"exp=1800000000", "t=1", "k=" + k2 + ":"}, "channel"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			txt := &dns.TXT{Hdr: dns.RR_Header{Name: tc.owner, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: TTL}, Txt: tc.txt}
			packet, err := BuildPacket([]dns.RR{txt})
			if err != nil {
				t.Fatal(err)
			}
			_, ok, err := FindDelegation(root, packet)
			if tc.want == "" {
				if err != nil || !ok {
					t.Fatalf("got %v, %v", ok, err)
				}
				return
			}
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrMalformed with %q", err, tc.want)
			}
		})
	}
	// Two delegation records, or one of another type, are refused.
	txt, _ := testDelegation(t, 1, 2).TXT(root)
	packet, _ := BuildPacket([]dns.RR{txt, txt})
	if _, _, err := FindDelegation(root, packet); !errors.Is(err, ErrMalformed) {
		t.Fatalf("two records: %v", err)
	}
	a := &dns.A{Hdr: dns.RR_Header{Name: DelegationOwner(root), Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: TTL}, A: []byte{127, 0, 0, 1}}
	packet, _ = BuildPacket([]dns.RR{a})
	if _, _, err := FindDelegation(root, packet); !errors.Is(err, ErrMalformed) {
		t.Fatalf("A record: %v", err)
	}
}

func TestCheckDelegation(t *testing.T) {
	root, other := fixedKey(t, 1), fixedKey(t, 7)
	d := testDelegation(t, 1, 2)
	seq := fixedNow.UnixMicro()
	p := mustSign(t, root, seq, mustDelegate(t, root.PublicKey(), d))
	pol := Policy{Now: fixedNow}
	if got, ok, err := CheckDelegation(p, root.PublicKey(), 0, pol); err != nil || !ok || got.Keys[0].Key != d.Keys[0].Key {
		t.Fatalf("got %+v, %v, %v", got, ok, err)
	}
	// Replay: a delegation older than one seen (which may revoke a key).
	if _, _, err := CheckDelegation(p, root.PublicKey(), seq+1, pol); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay: %v", err)
	}
	// Freeze: past its expiry.
	late := Policy{Now: d.Expires}
	if _, ok, err := CheckDelegation(p, root.PublicKey(), 0, late); !errors.Is(err, ErrExpired) || !ok {
		t.Fatalf("expired: %v, %v", ok, err)
	}
	late.AllowExpired = true
	if _, _, err := CheckDelegation(p, root.PublicKey(), 0, late); err != nil {
		t.Fatalf("expired, allowed: %v", err)
	}
	// A delegation signed by another key (a release key's) is not the root's.
	forged := mustSign(t, other, seq, mustDelegate(t, root.PublicKey(), d))
	if _, _, err := CheckDelegation(forged, root.PublicKey(), 0, pol); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("other key: %v", err)
	}
	// A packet with a release record only: no delegation.
	plain := mustSign(t, root, seq, mustSetRelease(t, root.PublicKey(), nil, testRelease("stable", "1.0.0")))
	if _, ok, err := CheckDelegation(plain, root.PublicKey(), 0, pol); ok || err != nil {
		t.Fatalf("plain: %v, %v", ok, err)
	}
}

func mustDelegate(t testing.TB, root signer.PublicKey, d Delegation) []byte {
	t.Helper()
	b, err := SetDelegation(root, nil, d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func signedBy(t testing.TB, b byte, r Release) Signed {
	return Signed{Key: fixedKey(t, b).PublicKey(), Release: r}
}

// TestQuorum: 2 of 3 keys (2, 3, 4): one signature is not enough, two
// different manifests are refused, any two suffice; a key counted twice,
// a key never named and a revoked key count for nothing.
func TestQuorum(t *testing.T) {
	d := testDelegation(t, 2, 2, 3, 4)
	d.Revoked = []signer.PublicKey{fixedKey(t, 5).PublicKey()}
	r1 := testRelease("stable", "1.0.0")
	other := r1
	other.Manifest = SHA256([]byte("another build"))
	pol := Policy{Now: fixedNow}
	for _, tc := range []struct {
		name  string
		found []Signed
		want  error
	}{
		{"one", []Signed{signedBy(t, 2, r1)}, ErrThreshold},
		{"two different manifests", []Signed{signedBy(t, 2, r1), signedBy(t, 3, other)}, ErrThreshold},
		{"keys 2 and 3", []Signed{signedBy(t, 2, r1), signedBy(t, 3, r1)}, nil},
		{"keys 2 and 4", []Signed{signedBy(t, 2, r1), signedBy(t, 4, r1)}, nil},
		{"keys 3 and 4", []Signed{signedBy(t, 3, r1), signedBy(t, 4, r1)}, nil},
		{"same key twice", []Signed{signedBy(t, 2, r1), signedBy(t, 2, r1)}, ErrThreshold},
		{"unnamed key", []Signed{signedBy(t, 2, r1), signedBy(t, 9, r1)}, ErrThreshold},
		{"revoked key", []Signed{signedBy(t, 2, r1), signedBy(t, 5, r1)}, ErrThreshold},
		{"none", nil, ErrNoRelease},
		{"other channel", []Signed{signedBy(t, 2, testRelease("beta", "1.0.0")), signedBy(t, 3, testRelease("beta", "1.0.0"))}, ErrNoRelease},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, signers, err := Quorum(d, "stable", tc.found, Accepted{}, pol)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if tc.want == nil && (r.Manifest != r1.Manifest || len(signers) != 2) {
				t.Fatalf("got %+v signed by %v", r, signers)
			}
		})
	}
}

func TestQuorumPicks(t *testing.T) {
	d := testDelegation(t, 1, 2, 3)
	pol := Policy{Now: fixedNow}
	r1, r2 := testRelease("stable", "1.0.0"), testRelease("stable", "1.1.0")
	// The highest version wins.
	r, _, err := Quorum(d, "stable", []Signed{signedBy(t, 2, r1), signedBy(t, 3, r2)}, Accepted{}, pol)
	if err != nil || r.Version != r2.Version {
		t.Fatalf("got %s, %v", r.Version, err)
	}
	// Two keys sign different records of one version: refused, even at 1 of 2.
	fork := r2
	fork.Manifest = SHA256([]byte("fork"))
	if _, _, err := Quorum(d, "stable", []Signed{signedBy(t, 2, fork), signedBy(t, 3, r2)}, Accepted{}, pol); !errors.Is(err, ErrThreshold) {
		t.Fatalf("fork: %v", err)
	}
	// Rollback below the accepted version.
	if _, _, err := Quorum(d, "stable", []Signed{signedBy(t, 2, r1)}, Accepted{Version: r2.Version}, pol); !errors.Is(err, ErrRollback) {
		t.Fatalf("rollback: %v", err)
	}
	// Expired: the release comes with ErrExpired; AllowExpired takes it.
	late := Policy{Now: r1.Expires}
	if r, _, err := Quorum(d, "stable", []Signed{signedBy(t, 2, r1)}, Accepted{}, late); !errors.Is(err, ErrExpired) || r.Version != r1.Version {
		t.Fatalf("expired: %s, %v", r.Version, err)
	}
	late.AllowExpired = true
	if _, _, err := Quorum(d, "stable", []Signed{signedBy(t, 2, r1)}, Accepted{}, late); err != nil {
		t.Fatalf("expired, allowed: %v", err)
	}
	// A key restricted to beta does not count on stable.
	d.Keys[1].Channels = []string{"beta"}
	d.Threshold = 2
	if _, _, err := Quorum(d, "stable", []Signed{signedBy(t, 2, r1), signedBy(t, 3, r1)}, Accepted{}, pol); !errors.Is(err, ErrThreshold) {
		t.Fatalf("restricted: %v", err)
	}
	// Web seeds of every signer, expiry the earliest.
	d = testDelegation(t, 2, 2, 3)
	a, b := r1, r1
	b.WebSeeds = []string{"https://mirror.example/"}
	b.Expires = r1.Expires.Add(-time.Hour)
	r, signers, err := Quorum(d, "stable", []Signed{signedBy(t, 3, a), signedBy(t, 2, b)}, Accepted{}, pol)
	if err != nil || len(r.WebSeeds) != 2 || !r.Expires.Equal(b.Expires) || len(signers) != 2 {
		t.Fatalf("got %+v, %v, %v", r, signers, err)
	}
}
