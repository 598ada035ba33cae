package record

import (
	"fmt"
	"time"

	"github.com/relay-sh/relay/signer"
)

// DefaultMaxFuture is how far ahead of the watcher's clock a packet's seq
// may be before it is refused as a fast-forward: generous for clock skew,
// short against a packet signed to outrank every later release.
const DefaultMaxFuture = 15 * time.Minute

// Accepted is what a watcher last accepted for one key and channel. The
// caller persists it and passes it to Check; the zero value means nothing
// accepted yet.
type Accepted struct {
	Seq      int64   `json:"seq"`
	Version  Version `json:"version"`
	Manifest Digest  `json:"manifest"`
	// Signers are the release keys whose records made the accepted
	// release count, when a delegation named them; empty when the
	// followed key signed it itself.
	Signers []signer.PublicKey `json:"signers,omitempty"`
}

// Policy holds the inputs of Check besides the packet.
type Policy struct {
	// Now is the watcher's clock.
	Now time.Time
	// MaxFuture is how far ahead of Now a seq may be; zero means
	// DefaultMaxFuture.
	MaxFuture time.Duration
	// AllowExpired accepts a record past its expiry instead of
	// returning ErrExpired.
	AllowExpired bool
}

// Check runs steps 2 to 4 of the verification chain on a packet found for
// trusted: the packet must be signed by trusted, its seq not below
// last.Seq nor too far in the future, its channel record valid, and its
// version not below last.Version. A record past its expiry gives
// ErrExpired together with the release, so a caller can say what it
// refused. A version equal to last.Version is returned without error: the
// caller sees there is nothing new.
func Check(p *SignedPacket, trusted signer.PublicKey, channel string, last Accepted, pol Policy) (Release, error) {
	if err := checkPacket(p, trusted, last.Seq, pol); err != nil {
		return Release{}, err
	}
	r, err := FindRelease(p.Key, p.Packet, channel)
	if err != nil {
		return Release{}, err
	}
	if r.Version.Less(last.Version) {
		return r, fmt.Errorf("%w: record has %s, %s was accepted", ErrRollback, r.Version, last.Version)
	}
	if !pol.AllowExpired && !pol.Now.Before(r.Expires) {
		return r, fmt.Errorf("%w: record of %s expired %s", ErrExpired, r.Version, r.Expires.Format(time.RFC3339))
	}
	return r, nil
}

// checkPacket runs steps 2 and 3 of the verification chain on p: signed
// by trusted, its seq not below lastSeq nor too far ahead of pol.Now.
func checkPacket(p *SignedPacket, trusted signer.PublicKey, lastSeq int64, pol Policy) error {
	if p.Key != trusted {
		return fmt.Errorf("%w: packet is for key %s, not the trusted %s", ErrBadSignature, p.Key, trusted)
	}
	if err := p.Verify(); err != nil {
		return err
	}
	if p.Seq < lastSeq {
		return fmt.Errorf("%w: packet signed %s, one signed %s was accepted", ErrReplay,
			p.Time().Format(time.RFC3339Nano), time.UnixMicro(lastSeq).UTC().Format(time.RFC3339Nano))
	}
	maxFuture := pol.MaxFuture
	if maxFuture == 0 {
		maxFuture = DefaultMaxFuture
	}
	if limit := pol.Now.Add(maxFuture); p.Time().After(limit) {
		return fmt.Errorf("%w: packet signed %s, %s ahead of this clock", ErrFutureSeq,
			p.Time().Format(time.RFC3339), p.Time().Sub(pol.Now).Round(time.Second))
	}
	return nil
}

// Accept returns the state to persist once the release r, found in packet
// p, has been installed.
func Accept(p *SignedPacket, r Release) Accepted {
	return Accepted{Seq: p.Seq, Version: r.Version, Manifest: r.Manifest}
}
