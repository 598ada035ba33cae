package record

import (
	"errors"
	"testing"
	"time"
)

func TestCheck(t *testing.T) {
	k := fixedKey(t, 1)
	now := fixedNow
	sign := func(at time.Time, version string) *SignedPacket {
		return mustSign(t, k, at.UnixMicro(), mustSetRelease(t, k.PublicKey(), nil, testRelease("stable", version)))
	}
	cur := sign(now.Add(-time.Hour), "1.2.0")
	last := Accepted{Seq: cur.Seq, Version: MustParseVersion("1.2.0")}
	pol := Policy{Now: now}

	// The accepted packet itself, and a newer release.
	if r, err := Check(cur, k.PublicKey(), "stable", last, pol); err != nil || r.Version.String() != "1.2.0" {
		t.Fatalf("same packet: %v %v", r.Version, err)
	}
	next := sign(now, "1.3.0")
	r, err := Check(next, k.PublicKey(), "stable", last, pol)
	if err != nil || r.Version.String() != "1.3.0" {
		t.Fatalf("newer release: %v %v", r.Version, err)
	}
	if a := Accept(next, r); a.Seq != next.Seq || a.Version.String() != "1.3.0" || a.Manifest != r.Manifest {
		t.Fatalf("Accept = %+v", a)
	}

	other := fixedKey(t, 2)
	forged := mustSign(t, other, now.UnixMicro(), next.Packet)
	forgedUnderKey := *forged
	forgedUnderKey.Key = k.PublicKey()
	tampered := *next
	tampered.Packet = mustSetRelease(t, k.PublicKey(), nil, testRelease("stable", "9.0.0"))
	expired := testRelease("stable", "1.4.0")
	expired.Expires = now.Add(-time.Second)
	expiredPacket := mustSign(t, k, now.UnixMicro(), mustSetRelease(t, k.PublicKey(), nil, expired))

	for _, tc := range []struct {
		name string
		p    *SignedPacket
		pol  Policy
		want error
	}{
		{"another key", forged, pol, ErrBadSignature},
		{"another key's signature under ours", &forgedUnderKey, pol, ErrBadSignature},
		{"tampered packet", &tampered, pol, ErrBadSignature},
		{"replayed older packet", sign(now.Add(-2*time.Hour), "1.3.0"), pol, ErrReplay},
		{"newer seq lower version", sign(now, "1.1.9"), pol, ErrRollback},
		{"fast-forward", sign(now.Add(DefaultMaxFuture+time.Minute), "1.3.0"), pol, ErrFutureSeq},
		{"fast-forward custom", sign(now.Add(2*time.Minute), "1.3.0"), Policy{Now: now, MaxFuture: time.Minute}, ErrFutureSeq},
		{"expired", expiredPacket, pol, ErrExpired},
		{"other channel only", mustSign(t, k, now.UnixMicro(), mustSetRelease(t, k.PublicKey(), nil, testRelease("beta", "2.0.0"))), pol, ErrNoRelease},
	} {
		r, err := Check(tc.p, k.PublicKey(), "stable", last, tc.pol)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if !IsVerification(err) && tc.want != ErrNoRelease {
			t.Errorf("%s: IsVerification false", tc.name)
		}
		if tc.want == ErrExpired && r.Version.String() != "1.4.0" {
			t.Errorf("expired: release not returned with the error")
		}
	}
	if _, err := Check(expiredPacket, k.PublicKey(), "stable", last, Policy{Now: now, AllowExpired: true}); err != nil {
		t.Errorf("AllowExpired: %v", err)
	}
	// Within the clock tolerance is fine.
	if _, err := Check(sign(now.Add(5*time.Minute), "1.3.0"), k.PublicKey(), "stable", last, pol); err != nil {
		t.Errorf("5 minutes ahead: %v", err)
	}
}
