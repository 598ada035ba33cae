package record

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"

	"github.com/relay-sh/relay/signer"
)

// RolloutPlace returns a machine's place, 0 to 99, in the staged rollout
// of release version v of key's channel: the machine takes the release
// when its place is below the record's Rollout. secret is the machine's
// own random secret (at least 16 bytes), which never leaves it: nobody
// else can tell where a machine stands, and each release orders the
// machines anew, while a machine's place in one release never changes,
// so that widening a rollout only adds machines. docs/spec/rollout.md
// fixes the computation.
func RolloutPlace(secret []byte, key signer.PublicKey, channel string, v Version) int {
	return int(binary.BigEndian.Uint64(rolloutMAC(secret, key, channel, v)[:8]) % 100)
}

func rolloutMAC(secret []byte, key signer.PublicKey, channel string, v Version) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("relay rollout\x00"))
	m.Write(key[:])
	m.Write([]byte(channel + "\x00" + v.String()))
	return m.Sum(nil)
}

// Takes reports whether a machine with secret takes r now: r is critical,
// not in a staged rollout, or the machine's place is within it.
func (r Release) Takes(secret []byte, key signer.PublicKey) bool {
	return r.Critical || r.Rollout <= 0 || RolloutPlace(secret, key, r.Channel, r.Version) < r.Rollout
}
