package record_test

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
)

// exampleKey is a provider key from a fixed seed, so that the examples'
// output stays the same.
func exampleKey() *signer.PrivateKey {
	k, err := signer.NewPrivateKey(bytes.Repeat([]byte{1}, 32))
	if err != nil {
		panic(err)
	}
	return k
}

// A provider signs a release record; a watcher reads it back and runs the
// checks of the verification chain (signature, seq, version, expiry) on
// it. The package does no I/O: the body is what the DHT or an HTTP relay
// carries, and the time is an argument.
func Example() {
	key := exampleKey()
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	ih, _ := record.ParseInfohash("b7d935c77b9694a16cf93e1c68c625991e169bb3")
	m, _ := record.ParseDigest("65c5d4f19395f34eddcd53d4ffc948b1dc1440bc9611a7542ed5b1dce0ada50a")
	rel := record.Release{
		Channel:  "stable",
		Version:  record.MustParseVersion("1.4.2"),
		Infohash: ih,
		Manifest: m,
		Size:     600,
		Expires:  now.Add(30 * 24 * time.Hour),
	}

	// The publisher: one DNS packet holds the key's channels; sign it.
	packet, err := record.SetRelease(key.PublicKey(), nil, rel)
	if err != nil {
		panic(err)
	}
	signed, err := record.Sign(key, record.NextSeq(now, 0), packet)
	if err != nil {
		panic(err)
	}
	body := signed.Body() // signature, seq and packet: pkarr's relay body

	// The watcher, who trusts the key and nothing else.
	got, err := record.ParseBody(key.PublicKey(), body)
	if err != nil {
		panic(err)
	}
	found, err := record.Check(got, key.PublicKey(), "stable", record.Accepted{}, record.Policy{Now: now})
	if err != nil {
		panic(err)
	}
	fmt.Println(found.Channel, found.Version, found.Infohash, found.Size)
	fmt.Println(record.Owner(key.PublicKey(), "stable"))
	// Output:
	// stable 1.4.2 b7d935c77b9694a16cf93e1c68c625991e169bb3 600
	// stable._relay.tkrq8zmwb8a3m9k15csu3q17qmfgqnp9dskbrg9uq1rydpyxp7qy.
}

// A watcher that accepted 2.0.0 refuses an older release even when it
// comes in a newer, validly signed packet: a rollback. What it accepted
// is the state it keeps (Accept) and passes to the next Check.
func ExampleCheck_rollback() {
	key := exampleKey()
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	sign := func(version string, at time.Time) *record.SignedPacket {
		rel := record.Release{
			Channel:  "stable",
			Version:  record.MustParseVersion(version),
			Infohash: record.Infohash{1}, // the bundle's, as transfer.Make gives it
			Manifest: record.Digest{2},
			Size:     600,
			Expires:  at.Add(24 * time.Hour),
		}
		packet, err := record.SetRelease(key.PublicKey(), nil, rel)
		if err != nil {
			panic(err)
		}
		p, err := record.Sign(key, at.UnixMicro(), packet)
		if err != nil {
			panic(err)
		}
		return p
	}

	p2 := sign("2.0.0", now)
	r2, err := record.Check(p2, key.PublicKey(), "stable", record.Accepted{}, record.Policy{Now: now})
	if err != nil {
		panic(err)
	}
	accepted := record.Accept(p2, r2)

	later := now.Add(time.Hour)
	_, err = record.Check(sign("1.9.0", later), key.PublicKey(), "stable", accepted, record.Policy{Now: later})
	fmt.Println(errors.Is(err, record.ErrRollback))

	_, err = record.Check(p2, key.PublicKey(), "stable", accepted, record.Policy{Now: later.Add(48 * time.Hour)})
	fmt.Println(errors.Is(err, record.ErrExpired))
	// Output:
	// true
	// true
}

// Versions are semantic versions, ordered as semver.org says: a
// pre-release comes before its release.
func ExampleVersion_Compare() {
	a := record.MustParseVersion("1.10.0-rc.1")
	b := record.MustParseVersion("1.10.0")
	c := record.MustParseVersion("1.9.3")
	fmt.Println(a.Compare(b), b.Compare(c), c.Less(a))
	// Output:
	// -1 1 true
}
