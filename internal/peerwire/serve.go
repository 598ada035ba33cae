package peerwire

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"slices"
	"sync"
	"time"

	pp "github.com/anacrolix/torrent/peer_protocol"
)

// Extension is a BEP 10 extension a Client offers besides ut_metadata: it
// lists Name in its extended handshake, and hands the messages of peers
// that list it too to OnMessage. relay_record (docs/spec/relay-record.md)
// is carried so.
type Extension struct {
	// Name is the extension's name in the handshake's m dictionary.
	Name string
	// MaxSize bounds a message's payload: a longer one is dropped. Zero:
	// 64 KiB (and never more than 128 KiB, the wire's bound).
	MaxSize int
	// OnPeer is called once for each peer whose extended handshake lists
	// Name, from that peer's goroutine.
	OnPeer func(p *Peer)
	// OnMessage is called with each message of the extension from a peer
	// OnPeer was called for, from that peer's goroutine (the peer's next
	// message is read after it returns). payload is valid only during the
	// call.
	OnMessage func(p *Peer, payload []byte)
	// OnClose is called when a peer OnPeer was called for is gone.
	OnClose func(p *Peer)
}

func (e *Extension) maxSize() int {
	if e.MaxSize <= 0 {
		return 64 << 10
	}
	return e.MaxSize
}

// Serve accepts connections on ln for the client's torrents until ctx
// ends, then closes ln and every connection it accepted, and returns
// when they are gone. It holds at most Config.MaxConns connections whose
// handshake is not over (closing those beyond), for at most
// Config.HandshakeTimeout each.
func (c *Client) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	if ap, ok := addrPortOf(ln.Addr()); ok {
		c.listenPort.Store(uint32(ap.Port()))
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	var delay time.Duration
	// Connections are held at most HandshakeTimeout before their
	// handshake is over; at most MaxConns at once.
	handshakes := make(chan struct{}, c.cfg.MaxConns)
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Out of file descriptors and the like: wait, as
				// net/http does.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(delay):
				case <-ctx.Done():
				}
				continue
			}
			ln.Close()
			return err
		}
		delay = 0
		select {
		case handshakes <- struct{}{}:
		default:
			conn.Close() // too many handshakes at once
			continue
		}
		wg.Go(func() { c.accept(ctx, conn, func() { <-handshakes }) })
	}
}

// onRequest queues a peer's request, if it is unchoked and asks for a
// block of a piece the torrent has; else it is refused (rejected, to a
// peer that speaks BEP 6).
func (p *Peer) onRequest(r request) {
	t := p.t
	t.mu.Lock()
	p.active = time.Now()
	ok := !p.amChoking && int(r.index) < t.npieces && t.have.has(int(r.index)) && t.offered(p, int(r.index)) &&
		r.length > 0 && r.length <= maxRequestLen && int64(r.begin)+int64(r.length) <= t.pieceSize(int(r.index))
	t.mu.Unlock()
	p.wmu.Lock()
	if ok && len(p.serving) < ourReqq {
		p.serving = append(p.serving, r)
	} else if p.fast {
		p.out = appendMsg(p.out, pp.Reject, r.index, r.begin, r.length)
	}
	p.wmu.Unlock()
	p.wakeWriter()
}

// onCancel drops a queued request of the peer.
func (p *Peer) onCancel(r request) {
	p.wmu.Lock()
	if i := slices.Index(p.serving, r); i >= 0 {
		p.serving = slices.Delete(p.serving, i, i+1)
		if p.fast {
			p.out = appendMsg(p.out, pp.Reject, r.index, r.begin, r.length)
		}
	}
	p.wmu.Unlock()
}

// blockHeader is the length of a piece message's header: length, id,
// index and begin.
const blockHeader = 13

// serveBlock reads a requested block from the torrent's storage and
// writes it to the peer, within the client's upload rate. msg holds the
// message: blockHeader bytes for its header, then the block's length.
// The header and the block go out in one write: net.Buffers wrote them
// apart on a connection that is not a *net.TCPConn itself, two writes
// and the 13 bytes in a segment of their own for every block.
func (p *Peer) serveBlock(done <-chan struct{}, r request, msg []byte) error {
	t := p.t
	buf := msg[blockHeader:]
	if !t.takeUpload(p, r) {
		if p.fast {
			p.send(appendMsg(nil, pp.Reject, r.index, r.begin, r.length))
		}
		return nil
	}
	if err := p.c.up.wait(done, len(buf)); err != nil {
		return err
	}
	if _, err := t.store.ReadAt(buf, int64(r.index)*t.pieceLen+int64(r.begin)); err != nil {
		return err
	}
	binary.BigEndian.PutUint32(msg, uint32(9+len(buf)))
	msg[4] = byte(pp.Piece)
	binary.BigEndian.PutUint32(msg[5:], r.index)
	binary.BigEndian.PutUint32(msg[9:], r.begin)
	p.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := p.conn.Write(msg); err != nil {
		return err
	}
	p.uploaded.Add(int64(len(buf)))
	t.uploaded.Add(int64(len(buf)))
	return nil
}

// considerUnchoke unchokes an interested peer when a slot is free, else
// puts it in line. t.mu is held.
func (t *Torrent) considerUnchoke(p *Peer) {
	if !p.amChoking || !p.interested || !t.mayUnchoke(p) {
		return
	}
	if t.slots < t.c.cfg.UploadSlots {
		p.amChoking = false
		p.active = time.Now()
		t.slots++
		p.send(appendMsg(nil, pp.Unchoke))
		return
	}
	if !slices.Contains(t.waiting, p) {
		t.waiting = append(t.waiting, p)
	}
	t.freeIdleSlot()
}

// freeIdleSlot chokes an unchoked peer that requested nothing for
// Config.SlotIdle, if a peer waits for its slot, and looks again later
// while peers wait. t.mu is held.
func (t *Torrent) freeIdleSlot() {
	if len(t.waiting) == 0 {
		return
	}
	idle := t.c.cfg.SlotIdle
	now := time.Now()
	next := idle
	for q := range t.peers {
		if q.amChoking {
			continue
		}
		if since := now.Sub(q.active); since < idle {
			next = min(next, idle-since)
			continue
		}
		t.choke(q) // its slot goes to the first in line
		if q.interested {
			t.waiting = append(t.waiting, q) // and it waits its turn
		}
		break
	}
	if t.rotate == nil && len(t.waiting) > 0 {
		t.rotate = time.AfterFunc(next, func() {
			t.mu.Lock()
			defer t.mu.Unlock()
			t.rotate = nil
			t.freeIdleSlot()
		})
	}
}

// choke chokes p, drops its queued requests, and gives its slot to the
// next peer in line. t.mu is held.
func (t *Torrent) choke(p *Peer) {
	t.unwait(p)
	if p.amChoking {
		return
	}
	p.amChoking = true
	t.slots--
	p.wmu.Lock()
	p.out = appendMsg(p.out, pp.Choke)
	if p.fast {
		for _, r := range p.serving {
			p.out = appendMsg(p.out, pp.Reject, r.index, r.begin, r.length)
		}
	}
	p.serving = p.serving[:0]
	p.wmu.Unlock()
	p.wakeWriter()
	t.unchokeNext()
}

// unchokeNext unchokes the peers in line while slots are free. t.mu is
// held.
func (t *Torrent) unchokeNext() {
	for len(t.waiting) > 0 && t.slots < t.c.cfg.UploadSlots {
		p := t.waiting[0]
		t.waiting = t.waiting[1:]
		t.considerUnchoke(p)
	}
}

// unwait takes p out of the line for a slot. t.mu is held.
func (t *Torrent) unwait(p *Peer) {
	if i := slices.Index(t.waiting, p); i >= 0 {
		t.waiting = slices.Delete(t.waiting, i, i+1)
	}
}

// limiter is a token bucket of bytes a second shared by every peer; nil
// does not limit.
type limiter struct {
	mu     sync.Mutex
	rate   float64
	tokens float64
	last   time.Time
}

func newLimiter(rate int64) *limiter {
	if rate <= 0 {
		return nil
	}
	return &limiter{rate: float64(rate), tokens: float64(min(rate, 1<<20)), last: time.Now()}
}

// wait takes n bytes from the bucket, waiting for them to be there, until
// done is closed.
func (l *limiter) wait(done <-chan struct{}, n int) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	now := time.Now()
	// A burst of at most one second's worth and 1 MiB (as the torrent
	// library's limiter allows), or one block.
	l.tokens = min(max(min(l.rate, 1<<20), float64(n)), l.tokens+now.Sub(l.last).Seconds()*l.rate)
	l.last = now
	l.tokens -= float64(n)
	short := -l.tokens
	l.mu.Unlock()
	if short <= 0 {
		return nil
	}
	timer := time.NewTimer(time.Duration(short / l.rate * float64(time.Second)))
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-done:
		return errors.New("connection closed")
	}
}
