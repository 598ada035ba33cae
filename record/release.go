package record

import (
	"crypto/sha256"
	"time"
)

// Release is one channel's release record: what a provider published last
// on that channel.
type Release struct {
	Channel  string
	Version  Version
	Infohash Infohash
	// Manifest is the SHA-256 of the bundle's relay.json.
	Manifest Digest
	// Size is the bundle's total size in bytes; a download never reads more.
	Size int64
	// Expires is when the record goes stale.
	Expires time.Time
	// WebSeeds are HTTP(S) URLs serving the same files (BEP 19).
	WebSeeds []string
	// Rollout is the percentage of machines, 1 to 99, that take this
	// release now (a staged rollout, docs/spec/rollout.md); 0 means every
	// machine. RolloutPlace says whether a machine is among them.
	Rollout int
	// Critical marks a security fix: it is never held back by a rollout,
	// and a program should install it without waiting.
	Critical bool
}

// SHA256 returns the SHA-256 digest of b.
func SHA256(b []byte) Digest { return sha256.Sum256(b) }
