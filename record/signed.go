package record

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"strconv"
	"time"

	"github.com/relay-sh/relay/signer"
)

// MaxPacketSize is the largest DNS packet a signed packet may carry, so
// that its bencoding ("996:" and the bytes) fits BEP 44's 1000-byte v.
const MaxPacketSize = 996

// bodyHeader is the length of the pkarr relay body before the packet:
// signature (64) and seq (8).
const bodyHeader = ed25519.SignatureSize + 8

// SignedPacket is a DNS packet signed by a provider key: the BEP 44 mutable
// item (no salt) that relay stores in the DHT, in the form pkarr uses.
type SignedPacket struct {
	// Key is the public key that signed the packet.
	Key signer.PublicKey
	// Seq is the time of signing in microseconds since the Unix epoch; the
	// higher seq wins.
	Seq int64
	// Sig is the ed25519 signature over SigningBuffer(Seq, Packet).
	Sig [ed25519.SignatureSize]byte
	// Packet is the DNS packet (BEP 44's v).
	Packet []byte
}

// SigningBuffer returns the bytes BEP 44 signs for a mutable item with no
// salt: the bencoded "3:seqi<seq>e1:v<len>:<v>".
func SigningBuffer(seq int64, packet []byte) []byte {
	b := make([]byte, 0, 32+len(packet))
	b = append(b, "3:seqi"...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, "e1:v"...)
	b = strconv.AppendInt(b, int64(len(packet)), 10)
	b = append(b, ':')
	return append(b, packet...)
}

// Sign signs packet with k at seq. It refuses a packet over MaxPacketSize
// and a negative seq.
func Sign(k *signer.PrivateKey, seq int64, packet []byte) (*SignedPacket, error) {
	if len(packet) > MaxPacketSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d fit in a BEP 44 item", ErrTooLarge, len(packet), MaxPacketSize)
	}
	if seq < 0 {
		return nil, fmt.Errorf("%w: negative seq %d", ErrMalformed, seq)
	}
	p := &SignedPacket{Key: k.PublicKey(), Seq: seq, Packet: append([]byte(nil), packet...)}
	copy(p.Sig[:], k.SignMessage(SigningBuffer(seq, packet)))
	return p, nil
}

// Verify checks p's size and its signature by p.Key.
func (p *SignedPacket) Verify() error {
	if len(p.Packet) > MaxPacketSize {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(p.Packet), MaxPacketSize)
	}
	if p.Seq < 0 {
		return fmt.Errorf("%w: negative seq %d", ErrMalformed, p.Seq)
	}
	if !p.Key.Verify(SigningBuffer(p.Seq, p.Packet), p.Sig[:]) {
		return fmt.Errorf("%w: packet seq %d is not signed by %s", ErrBadSignature, p.Seq, p.Key)
	}
	return nil
}

// Time returns the time of signing that Seq records.
func (p *SignedPacket) Time() time.Time {
	return time.UnixMicro(p.Seq).UTC()
}

// Target returns the BEP 44 target of p: SHA-1 of its key.
func (p *SignedPacket) Target() [20]byte { return Target(p.Key) }

// Body returns the pkarr relay body: signature ‖ seq (8 bytes, big-endian)
// ‖ packet.
func (p *SignedPacket) Body() []byte {
	b := make([]byte, bodyHeader, bodyHeader+len(p.Packet))
	copy(b, p.Sig[:])
	binary.BigEndian.PutUint64(b[ed25519.SignatureSize:], uint64(p.Seq))
	return append(b, p.Packet...)
}

// ParseBody decodes a pkarr relay body for key and verifies it.
func ParseBody(key signer.PublicKey, body []byte) (*SignedPacket, error) {
	if len(body) < bodyHeader {
		return nil, fmt.Errorf("%w: relay body of %d bytes is shorter than its %d-byte header", ErrMalformed, len(body), bodyHeader)
	}
	seq := binary.BigEndian.Uint64(body[ed25519.SignatureSize:bodyHeader])
	if seq > 1<<63-1 {
		return nil, fmt.Errorf("%w: seq %d out of range", ErrMalformed, seq)
	}
	p := &SignedPacket{Key: key, Seq: int64(seq), Packet: append([]byte(nil), body[bodyHeader:]...)}
	copy(p.Sig[:], body)
	if err := p.Verify(); err != nil {
		return nil, err
	}
	return p, nil
}

// NextSeq returns the seq to sign with at now, given the current seq in
// the network (0 when there is none): the clock in microseconds, or one
// above current if the clock is not ahead of it.
func NextSeq(now time.Time, current int64) int64 {
	return max(now.UnixMicro(), current+1)
}
