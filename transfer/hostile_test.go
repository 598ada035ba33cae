package transfer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/relay-sh/relay/record"
)

// The peer wire protocol (BEP 3), written by hand for hostile peers: a
// handshake, then messages of a 4-byte big-endian length, a type byte and
// a payload.
const (
	msgUnchoke    = 1
	msgInterested = 2
	msgHave       = 4
	msgBitfield   = 5
	msgRequest    = 6
	msgPiece      = 7
)

var protocolName = []byte("\x13BitTorrent protocol")

// wireMessage encodes a message of type typ whose payload is the fields
// (4 bytes each) then data.
func wireMessage(typ byte, data []byte, fields ...uint32) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(1+4*len(fields)+len(data)))
	b = append(b, typ)
	for _, f := range fields {
		b = binary.BigEndian.AppendUint32(b, f)
	}
	return append(b, data...)
}

// wireHandshake sends a handshake for ih with no extension bits and reads
// the other side's, which must be a plain BitTorrent handshake for ih.
func wireHandshake(conn net.Conn, ih record.Infohash, id [20]byte) error {
	hs := append(append(append(bytes.Clone(protocolName), make([]byte, 8)...), ih[:]...), id[:]...)
	if _, err := conn.Write(hs); err != nil {
		return fmt.Errorf("write handshake: %w", err)
	}
	got := make([]byte, len(hs))
	if _, err := io.ReadFull(conn, got); err != nil {
		return fmt.Errorf("read handshake: %w", err)
	}
	if !bytes.HasPrefix(got, protocolName) || !bytes.Equal(got[28:48], ih[:]) {
		// An encrypted (MSE) handshake, which the fetcher follows with a
		// plain one on a new connection.
		return errors.New("not a plain handshake for the torrent")
	}
	return nil
}

// hostilePeer is a BitTorrent peer that sends more than it is asked for.
// On every connection (one it accepts, or one it makes with dial), it
// completes the handshake for one torrent, says it has every piece (a
// full bitfield), unchokes the other side, and then lets its flood write
// until the other side cuts the connection, the flood has pushed limit
// bytes, or the test ends. Its goroutines end with the test.
type hostilePeer struct {
	ln    net.Listener
	b     *Bundle
	flood func(*floodConn) error
	limit int64

	ctx     context.Context
	wg      sync.WaitGroup
	mu      sync.Mutex
	nextID  byte
	active  int           // connections whose flood has begun and not ended
	holding int           // connections whose flood is done, held open
	done    []floodResult // connections whose flood ended
}

// floodResult is what the flood of one connection achieved.
type floodResult struct {
	// pushed is the number of bytes written after the handshake.
	pushed int64
	// cut is true when the other side closed the connection (a write or
	// read failed) before the flood reached its limit or the test ended.
	cut bool
	err error
}

var errFloodLimit = errors.New("flood limit reached")

// startHostilePeer starts a hostile peer for the bundle b listening on
// host (127.0.0.2 or 127.0.0.3: an address of its own, so that the
// fetcher bans none but it).
func startHostilePeer(t *testing.T, host string, b *Bundle, limit int64, flood func(*floodConn) error) *hostilePeer {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &hostilePeer{ln: ln, b: b, flood: flood, limit: limit, ctx: ctx}
	t.Cleanup(func() {
		cancel()
		ln.Close()
		h.wg.Wait()
	})
	h.wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			h.wg.Go(func() { h.serve(conn) })
		}
	})
	return h
}

// dial connects the hostile peer to addr, from its own address, as many
// peers would.
func (h *hostilePeer) dial(t *testing.T, addr string) {
	t.Helper()
	local := *h.ln.Addr().(*net.TCPAddr)
	local.Port = 0
	d := net.Dialer{LocalAddr: &local}
	conn, err := d.DialContext(h.ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	h.wg.Go(func() { h.serve(conn) })
}

// serve runs one connection, and records what its flood achieved.
func (h *hostilePeer) serve(conn net.Conn) {
	defer conn.Close()
	stop := context.AfterFunc(h.ctx, func() { conn.Close() })
	defer stop()
	h.mu.Lock()
	h.nextID++
	id := [20]byte{'-', 'H', 'P', '0', '0', '0', '1', '-', 19: h.nextID}
	h.mu.Unlock()
	// A bound on a hang: the fetcher's side of the handshake can take
	// seconds under -race on a loaded machine.
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if err := wireHandshake(conn, h.b.Infohash, id); err != nil {
		return
	}
	conn.SetDeadline(time.Time{})
	fc := &floodConn{h: h, conn: conn, asked: make(map[[2]uint32]bool), changed: make(chan struct{}, 1), closed: make(chan struct{})}
	h.wg.Go(fc.read)
	pieces := int((h.b.Size + h.b.PieceLength - 1) / h.b.PieceLength)
	bf := make([]byte, (pieces+7)/8)
	for i := range pieces {
		bf[i/8] |= 0x80 >> (i % 8)
	}
	err := fc.write(append(wireMessage(msgBitfield, bf), wireMessage(msgUnchoke, nil)...))
	if err == nil {
		err = h.flood(fc)
	}
	if !fc.flooding {
		// A connection the flood never began on: one from a peer that
		// asked for nothing (the honest seeder, which learnt this
		// peer's address from the fetcher by peer exchange).
		return
	}
	r := floodResult{pushed: fc.pushed, err: err}
	var ne net.Error
	r.cut = h.ctx.Err() == nil && !errors.Is(err, errFloodLimit) && !(errors.As(err, &ne) && ne.Timeout())
	h.mu.Lock()
	h.active--
	h.done = append(h.done, r)
	h.mu.Unlock()
}

// results waits until at least one connection has flooded and none is
// flooding now, and returns what each achieved. It fails the test if
// that takes longer than timeout: a fetcher that keeps reading what it
// never asked for lets the flood go on until its limit.
func (h *hostilePeer) results(t *testing.T, timeout time.Duration) []floodResult {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		h.mu.Lock()
		out, active := append([]floodResult(nil), h.done...), h.active
		h.mu.Unlock()
		if len(out) > 0 && active == 0 {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, %d hostile connections have flooded and %d are still flooding", timeout, len(out)+active, active)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// held returns the number of connections whose flood is done and which
// the hostile peer holds open.
func (h *hostilePeer) held() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.holding
}

// floodConn is one connection of a hostile peer: what it pushed, and what
// the other side said on it.
type floodConn struct {
	h        *hostilePeer
	conn     net.Conn
	pushed   int64
	flooding bool // the flood has begun

	mu      sync.Mutex
	asked   map[[2]uint32]bool // blocks (index, begin) it requested
	first   [2]uint32          // the first block it requested
	has     []uint32           // pieces it said it has, in order
	changed chan struct{}      // signalled after each message read
	closed  chan struct{}      // closed when reading fails
}

// read reads the other side's messages until the connection closes.
func (fc *floodConn) read() {
	defer close(fc.closed)
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(fc.conn, hdr[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > 1<<20 {
			return
		}
		m := make([]byte, n)
		if _, err := io.ReadFull(fc.conn, m); err != nil {
			return
		}
		fc.mu.Lock()
		switch {
		case n == 5 && m[0] == msgHave:
			fc.has = append(fc.has, binary.BigEndian.Uint32(m[1:]))
		case n == 13 && m[0] == msgRequest:
			blk := [2]uint32{binary.BigEndian.Uint32(m[1:]), binary.BigEndian.Uint32(m[5:])}
			if len(fc.asked) == 0 {
				fc.first = blk
			}
			fc.asked[blk] = true
		}
		fc.mu.Unlock()
		select {
		case fc.changed <- struct{}{}:
		default:
		}
	}
}

// wait waits until cond, called with fc.mu held, holds.
func (fc *floodConn) wait(cond func() bool) error {
	for {
		fc.mu.Lock()
		ok := cond()
		fc.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-fc.changed:
		case <-fc.closed:
			return errors.New("the other side closed the connection")
		case <-fc.h.ctx.Done():
			return fc.h.ctx.Err()
		}
	}
}

// push writes b as part of the flood; the first push begins it.
func (fc *floodConn) push(b []byte) error {
	if !fc.flooding {
		fc.flooding = true
		fc.h.mu.Lock()
		fc.h.active++
		fc.h.mu.Unlock()
	}
	return fc.write(b)
}

// write writes b, counting what it writes, up to the peer's limit. A
// reader that takes nothing for five seconds fails it.
func (fc *floodConn) write(b []byte) error {
	for len(b) > 0 {
		room := fc.h.limit - fc.pushed
		if room <= 0 {
			return errFloodLimit
		}
		fc.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		n, err := fc.conn.Write(b[:min(int64(len(b)), room)])
		fc.pushed += int64(n)
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// hold counts the connection as held open once its flood is done, and
// waits until the other side closes it or the test ends.
func (fc *floodConn) hold() error {
	fc.h.mu.Lock()
	fc.h.holding++
	fc.h.mu.Unlock()
	return fc.wait(func() bool { return false })
}

// garbage is what hostile peers send as data.
var garbage = bytes.Repeat([]byte("hostile!"), 1<<17) // 1 MiB

// floodUnrequested sends garbage blocks the other side never asked for,
// over and over: those of the pieces it says it has (it will never ask
// for them, so none is taken for an answer to a request in flight),
// except any it asked this peer for before.
func floodUnrequested(fc *floodConn) error {
	var next int
	for {
		var p uint32
		if err := fc.wait(func() bool {
			if len(fc.has) == 0 {
				return false
			}
			p = fc.has[next%len(fc.has)]
			return true
		}); err != nil {
			return err
		}
		next++
		length := min(fc.h.b.PieceLength, fc.h.b.Size-int64(p)*fc.h.b.PieceLength)
		for begin := int64(0); begin < length; begin += blockSize {
			fc.mu.Lock()
			asked := fc.asked[[2]uint32{p, uint32(begin)}]
			fc.mu.Unlock()
			if asked {
				continue
			}
			if err := fc.push(wireMessage(msgPiece, garbage[:min(blockSize, length-begin)], p, uint32(begin))); err != nil {
				return err
			}
		}
	}
}

// floodOversized answers the first request with piece messages of n
// bytes of garbage, over and over.
func floodOversized(n int) func(*floodConn) error {
	return func(fc *floodConn) error {
		if err := fc.wait(func() bool { return len(fc.asked) > 0 }); err != nil {
			return err
		}
		data := bytes.Repeat(garbage, n/len(garbage)+1)[:n]
		msg := wireMessage(msgPiece, data, fc.first[0], fc.first[1])
		for {
			if err := fc.push(msg); err != nil {
				return err
			}
		}
	}
}

// floodEndless answers the first request with a piece message whose
// length announces 4 GiB - 1 bytes, then streams garbage.
func floodEndless(fc *floodConn) error {
	if err := fc.wait(func() bool { return len(fc.asked) > 0 }); err != nil {
		return err
	}
	hdr := binary.BigEndian.AppendUint32(nil, 1<<32-1)
	hdr = append(hdr, msgPiece)
	hdr = binary.BigEndian.AppendUint32(hdr, fc.first[0])
	hdr = binary.BigEndian.AppendUint32(hdr, fc.first[1])
	if err := fc.push(hdr); err != nil {
		return err
	}
	for {
		if err := fc.push(garbage); err != nil {
			return err
		}
	}
}

// floodPieceCounts claims, to a fetcher that does not know yet how many
// pieces the bundle has, far more: a bitfield as long as a message may be
// (524,280 pieces), then pieces 2^24 and 2^32-1; it holds the connection
// open after.
func floodPieceCounts(fc *floodConn) error {
	msgs := wireMessage(msgBitfield, bytes.Repeat([]byte{0xff}, 1<<16-1))
	msgs = append(msgs, wireMessage(msgHave, nil, 1<<24)...)
	msgs = append(msgs, wireMessage(msgHave, nil, 1<<32-1)...)
	if err := fc.push(msgs); err != nil {
		return err
	}
	return fc.hold()
}
