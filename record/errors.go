package record

import "errors"

// Sentinel errors say which check failed; callers branch on them with
// errors.Is. Every error returned by this package wraps one of them.
var (
	// ErrMalformed: a field, record, packet or manifest does not parse.
	ErrMalformed = errors.New("malformed")
	// ErrTooLarge: a DNS packet over MaxPacketSize bytes.
	ErrTooLarge = errors.New("packet too large")
	// ErrBadSignature: the signature does not verify with the trusted key.
	ErrBadSignature = errors.New("bad signature")
	// ErrNoRelease: the packet has no record for the channel.
	ErrNoRelease = errors.New("no release on this channel")
	// ErrReplay: a seq lower than the last one accepted for the key.
	ErrReplay = errors.New("older record than the one accepted")
	// ErrFutureSeq: a seq too far ahead of the clock (fast-forward).
	ErrFutureSeq = errors.New("record signed in the future")
	// ErrRollback: a version lower than the last one accepted.
	ErrRollback = errors.New("version lower than the one accepted")
	// ErrExpired: a record past its expiry (freeze).
	ErrExpired = errors.New("record expired")
	// ErrThreshold: fewer distinct release keys signed the same release
	// than the root's delegation requires, or they signed different ones.
	ErrThreshold = errors.New("not enough release keys signed it")
	// ErrRevoked: a release signed by a key the root's delegation revokes.
	ErrRevoked = errors.New("signed by a revoked key")
	// ErrManifestMismatch: a manifest that does not match its record (hash,
	// key, channel, version or size).
	ErrManifestMismatch = errors.New("manifest does not match record")
	// ErrFileMismatch: a file whose size or SHA-256 differs from the
	// manifest.
	ErrFileMismatch = errors.New("file does not match manifest")
)

// IsVerification reports whether err is a failed check of the
// verification chain (as opposed to a network or local failure).
func IsVerification(err error) bool {
	for _, s := range []error{ErrBadSignature, ErrReplay, ErrFutureSeq, ErrRollback, ErrExpired, ErrThreshold, ErrRevoked, ErrManifestMismatch, ErrFileMismatch, ErrTooLarge, ErrMalformed} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}
