package peerwire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	pp "github.com/anacrolix/torrent/peer_protocol"
)

// BlockSize is the size of the blocks a download requests (the last block
// of a piece may be shorter), the size every BitTorrent client uses.
const BlockSize = 16 << 10

// The wire's limits: a message longer than its type allows cuts the
// connection before its body is read.
const (
	// maxRequestLen is the longest block served; longer requests are
	// refused (BEP 3 clients ask 16 KiB, some up to 128 KiB).
	maxRequestLen = 128 << 10
	// maxExtended bounds an extended message (BEP 10), id and payload.
	maxExtended = 128 << 10
	// maxBitfieldPieces bounds a bitfield before the info (and so the
	// number of pieces) is known.
	maxBitfieldPieces = 1 << 20
	// maxUnknown bounds a message of a type this package does not know;
	// its body is skipped.
	maxUnknown = 64 << 10
)

// ErrMessageTooLong is returned (wrapped) when a peer announces a message
// longer than its type allows: the connection is cut before its body is
// read.
var ErrMessageTooLong = errors.New("message too long")

// pstr is the BEP 3 handshake's protocol string, with its length.
const pstr = "\x13BitTorrent protocol"

const handshakeLen = len(pstr) + 8 + 20 + 20

// Reserved bits this package sets and reads in the handshake.
const (
	extensionBit = 5 // byte 5, 0x10: BEP 10 extension protocol

	fastByte = 7 // byte 7, 0x04: BEP 6 fast extension
	fastMask = 0x04
)

// handshake is a BEP 3 handshake: reserved bits, infohash and peer id.
type handshake struct {
	reserved [8]byte
	infohash [20]byte
	peerID   [20]byte
}

func (h *handshake) extended() bool { return h.reserved[extensionBit]&0x10 != 0 }
func (h *handshake) fast() bool     { return h.reserved[fastByte]&fastMask != 0 }

// ourReserved are the reserved bits this package sends: extension
// protocol and fast extension.
func ourReserved() (r [8]byte) {
	r[extensionBit] |= 0x10
	r[fastByte] |= fastMask
	return r
}

func (h *handshake) marshal() []byte {
	b := make([]byte, 0, handshakeLen)
	b = append(b, pstr...)
	b = append(b, h.reserved[:]...)
	b = append(b, h.infohash[:]...)
	return append(b, h.peerID[:]...)
}

// readHandshake reads a whole handshake. A peer that sends another
// protocol string is refused after its first 20 bytes.
func readHandshake(r io.Reader) (handshake, error) {
	var h handshake
	b := make([]byte, handshakeLen)
	if _, err := io.ReadFull(r, b[:len(pstr)]); err != nil {
		return h, fmt.Errorf("failed to read the handshake: %w", err)
	}
	if !bytes.Equal(b[:len(pstr)], []byte(pstr)) {
		return h, fmt.Errorf("not a BitTorrent handshake: %q", b[:len(pstr)])
	}
	if _, err := io.ReadFull(r, b[len(pstr):]); err != nil {
		return h, fmt.Errorf("failed to read the handshake: %w", err)
	}
	copy(h.reserved[:], b[len(pstr):])
	copy(h.infohash[:], b[len(pstr)+8:])
	copy(h.peerID[:], b[len(pstr)+28:])
	return h, nil
}

// maxLen returns the longest message (type byte and payload) of type t a
// peer may send, given the number of pieces (0: not known yet).
func maxLen(t pp.MessageType, pieces int) int {
	switch t {
	case pp.Choke, pp.Unchoke, pp.Interested, pp.NotInterested, pp.HaveAll, pp.HaveNone:
		return 1
	case pp.Have, pp.Suggest, pp.AllowedFast:
		return 5
	case pp.Request, pp.Cancel, pp.Reject:
		return 13
	case pp.Port:
		return 3
	case pp.Bitfield:
		if pieces == 0 {
			return 1 + maxBitfieldPieces/8
		}
		return 1 + (pieces+7)/8
	case pp.Piece:
		return 9 + maxRequestLen
	case pp.Extended:
		return maxExtended
	}
	return maxUnknown
}

// minLen is the shortest message of type t: fixed-size types must have
// exactly their size.
func minLen(t pp.MessageType) int {
	switch t {
	case pp.Bitfield:
		return 1
	case pp.Piece:
		return 9
	case pp.Extended:
		return 2
	case pp.Choke, pp.Unchoke, pp.Interested, pp.NotInterested, pp.HaveAll, pp.HaveNone,
		pp.Have, pp.Suggest, pp.AllowedFast, pp.Request, pp.Cancel, pp.Reject, pp.Port:
		return maxLen(t, 1)
	}
	return 1
}

// readHeader reads a message's length and type, and checks the length
// against the type's bounds (pieces: the torrent's number of pieces, 0
// when not known). It returns the length of the payload after the type,
// -1 for a keep-alive.
func readHeader(r *bufio.Reader, pieces int) (pp.MessageType, int, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, 0, err
	}
	n := int(binary.BigEndian.Uint32(hdr[:]))
	if n == 0 {
		return 0, -1, nil
	}
	b, err := r.ReadByte()
	if err != nil {
		return 0, 0, err
	}
	typ := pp.MessageType(b)
	if n > maxLen(typ, pieces) {
		return 0, 0, fmt.Errorf("%w: %d bytes of type %d", ErrMessageTooLong, n, b)
	}
	if n < minLen(typ) {
		return 0, 0, fmt.Errorf("malformed message: %d bytes of type %d", n, b)
	}
	return typ, n - 1, nil
}

// appendMsg appends a message of type t with the given big-endian 32-bit
// fields to b.
func appendMsg(b []byte, t pp.MessageType, fields ...uint32) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(1+4*len(fields)))
	b = append(b, byte(t))
	for _, f := range fields {
		b = binary.BigEndian.AppendUint32(b, f)
	}
	return b
}

// appendExtended appends an extended message (BEP 10) of id with payload.
func appendExtended(b []byte, id byte, payload []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(2+len(payload)))
	b = append(b, byte(pp.Extended), id)
	return append(b, payload...)
}

// appendBitfield appends a bitfield message of bf.
func appendBitfield(b []byte, bf bitfield) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(1+len(bf)))
	b = append(b, byte(pp.Bitfield))
	return append(b, bf...)
}

// keepAlive is the BEP 3 keep-alive: a message of length zero.
var keepAlive = []byte{0, 0, 0, 0}

// bitfield is a set of piece indexes, BEP 3's bitfield: the high bit of
// the first byte is piece 0.
type bitfield []byte

func newBitfield(n int) bitfield { return make(bitfield, (n+7)/8) }

func (b bitfield) has(i int) bool { return b[i>>3]&(0x80>>(i&7)) != 0 }
func (b bitfield) set(i int)      { b[i>>3] |= 0x80 >> (i & 7) }

// valid reports whether b is a bitfield of n pieces: the right length,
// and no bits set past the last piece (BEP 3: a peer that sends one is
// dropped).
func (b bitfield) valid(n int) bool {
	if len(b) != (n+7)/8 {
		return false
	}
	if n%8 == 0 {
		return true
	}
	return b[len(b)-1]&(0xff>>(n%8)) == 0
}
