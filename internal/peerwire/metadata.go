package peerwire

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	pp "github.com/anacrolix/torrent/peer_protocol"
)

// ErrBadInfo is returned (wrapped) for a peer whose info does not hash to
// the infohash asked for: FetchInfo drops it and asks others.
var ErrBadInfo = errors.New("info does not match the infohash")

// FetchInfo fetches the info dictionary of infohash ih from peers that
// have it (BEP 9), dialling peers and those more brings, and returns its
// bytes, which hash to ih. A peer that announces an info larger than
// Config.MaxInfoSize, sends pieces of the wrong size, or an info that
// does not hash to ih is dropped and the others asked; one that closes
// the connection before its extended handshake is dialled again, at most
// 3 times (a seeder refuses a second connection of one peer id). It
// fails when every peer was asked and more is closed (or nil), or when
// ctx ends.
//
// The connection that delivered the info, and those that offered it and
// were between two messages when it came, stay open when it returns:
// the download of the torrent, once added, takes each over instead of
// dialling its address again (so does Torrent.Connect), with what the
// peer sent meanwhile. They are closed if no dial of the torrent takes
// them within 30 s (the torrent is never added, or its download gets
// other peers), when FetchInfo runs again for ih, or when the client
// closes (Close). Nothing is read
// from or written to them while they wait.
func (c *Client) FetchInfo(ctx context.Context, ih metainfo.Hash, peers []string, more <-chan string) ([]byte, error) {
	if c.isClosed() {
		return nil, ErrClosed
	}
	c.closeParked(ih)
	ctx, cancel := context.WithCancel(ctx)
	// got ends when the info came: the other peers stop at their next
	// message, to be parked.
	got, gotInfo := context.WithCancel(context.Background())
	defer gotInfo()
	var wg sync.WaitGroup
	type result struct {
		info []byte
		pc   *parkedConn
		err  error
	}
	results := make(chan result, c.cfg.MaxConns)
	var keep []*parkedConn
	info, err := func() ([]byte, error) {
		tried := map[string]bool{}
		queue := append([]string(nil), peers...)
		active := 0
		var last error
		for {
			for len(queue) > 0 && active < c.cfg.MaxConns {
				a := queue[0]
				queue = queue[1:]
				if tried[a] {
					continue
				}
				tried[a] = true
				active++
				wg.Go(func() {
					b, pc, err := c.infoFromRetrying(ctx, got, ih, a)
					if err != nil {
						err = fmt.Errorf("peer %s: %w", a, err)
					}
					results <- result{b, pc, err}
				})
			}
			if active == 0 && more == nil {
				if last == nil {
					last = errors.New("no peers")
				}
				return nil, fmt.Errorf("failed to fetch the info of %s: %w", ih.HexString(), last)
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case a, ok := <-more:
				if !ok {
					more = nil
				} else {
					queue = append(queue, a)
				}
			case r := <-results:
				active--
				if r.info == nil {
					last = r.err
					continue
				}
				gotInfo()
				keep = append(keep, r.pc)
				for ; active > 0; active-- {
					select {
					case r := <-results:
						keep = append(keep, r.pc)
					case <-ctx.Done():
						return r.info, nil
					}
				}
				return r.info, nil
			}
		}
	}()
	cancel()
	wg.Wait()
	close(results)
	for r := range results {
		keep = append(keep, r.pc)
	}
	keep = slices.DeleteFunc(keep, func(pc *parkedConn) bool { return pc == nil })
	if err != nil {
		for _, pc := range keep {
			pc.conn.Close()
		}
		return nil, err
	}
	c.park(ih, keep)
	return info, nil
}

// errClosedEarly marks a connection the peer closed before its extended
// handshake: a seeder that still holds a connection of this peer id to
// the torrent (the client's last, which it has not seen end yet) refuses
// a new one so.
var errClosedEarly = errors.New("peer closed the connection before its extended handshake")

// infoRetries is how many times FetchInfo dials a peer again that closed
// the connection early, after 0.5, 1 and 2 s.
const infoRetries = 3

// infoFromRetrying is infoFrom, dialling a peer that closed the
// connection early again, at most infoRetries times, until got ends.
func (c *Client) infoFromRetrying(ctx, got context.Context, ih metainfo.Hash, addr string) ([]byte, *parkedConn, error) {
	for try := 0; ; try++ {
		b, pc, err := c.infoFrom(ctx, got, ih, addr)
		if !errors.Is(err, errClosedEarly) || try == infoRetries {
			return b, pc, err
		}
		select {
		case <-ctx.Done():
			return nil, nil, err
		case <-got.Done():
			return nil, nil, err
		case <-time.After(500 * time.Millisecond << try):
		}
	}
}

// closedEarly marks err, an error reading from or writing to a peer
// before its extended handshake, as errClosedEarly when the peer closed
// the connection.
func closedEarly(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return fmt.Errorf("%w: %w", errClosedEarly, err)
	}
	return err
}

// infoFrom fetches the info of ih from the peer at addr. It returns the
// connection to park with the info, or without it when won ended (the
// info came from another peer) while the peer, which offered the info,
// was between two messages; else it closes the connection.
func (c *Client) infoFrom(ctx, won context.Context, ih metainfo.Hash, addr string) (info []byte, parked *parkedConn, err error) {
	dctx, cancel := context.WithTimeout(ctx, c.cfg.HandshakeTimeout)
	stopDial := context.AfterFunc(won, cancel)
	conn, err := c.cfg.Dial(dctx, addr)
	stopDial()
	cancel()
	if err != nil {
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	// won wakes a read with a deadline in the past; the wake is over
	// before the connection is parked, so that it cannot touch the
	// deadline of the torrent's reads.
	woken := make(chan struct{})
	wake := context.AfterFunc(won, func() {
		conn.SetReadDeadline(time.Now())
		close(woken)
	})
	defer func() {
		stop()
		if !wake() && parked != nil {
			<-woken
		}
		if parked == nil {
			conn.Close()
		}
	}()
	deadline := func() { conn.SetDeadline(time.Now().Add(c.cfg.HandshakeTimeout)) }
	deadline()
	ours := handshake{reserved: ourReserved(), infohash: ih, peerID: c.cfg.PeerID}
	if _, err := conn.Write(ours.marshal()); err != nil {
		return nil, nil, err
	}
	r := bufio.NewReaderSize(conn, 64<<10)
	h, err := readHandshake(r)
	if err != nil {
		return nil, nil, closedEarly(err)
	}
	if h.infohash != ih {
		return nil, nil, fmt.Errorf("peer answered for infohash %x", h.infohash)
	}
	if !h.extended() {
		return nil, nil, errors.New("peer does not speak the extension protocol")
	}
	var out []byte
	if h.fast() {
		out = appendMsg(out, pp.HaveNone)
	}
	eh, _ := bencode.Marshal(extHandshake{M: map[string]int{pp.ExtensionNameMetadata: metadataID}, V: Version, Reqq: ourReqq})
	if _, err := conn.Write(appendExtended(out, 0, eh)); err != nil {
		return nil, nil, closedEarly(err)
	}
	pc := &parkedConn{conn: conn, r: r, h: h, addr: addr}
	parkable := true // what the peer sent fits in pc.replay
	var got []bool
	left := 0
	var body []byte
	for {
		deadline()
		if won.Err() != nil {
			return nil, parkedIf(parkable && info != nil, pc), won.Err()
		}
		if _, err := r.Peek(4); err != nil {
			if won.Err() != nil && errors.Is(err, os.ErrDeadlineExceeded) {
				// Woken between two messages.
				return nil, parkedIf(parkable && info != nil, pc), won.Err()
			}
			if info == nil {
				err = closedEarly(err)
			}
			return nil, nil, err
		}
		typ, n, err := readHeader(r, 0)
		if err != nil {
			return nil, nil, err
		}
		if n < 0 {
			continue
		}
		if cap(body) < n {
			body = make([]byte, n)
		}
		body = body[:n]
		if _, err := io.ReadFull(r, body); err != nil {
			return nil, nil, err
		}
		if typ != pp.Extended || body[0] == 0 {
			parkable = parkable && pc.keep(typ, body)
		}
		if typ != pp.Extended {
			continue
		}
		switch body[0] {
		case 0:
			if info != nil {
				continue // a second handshake changes nothing here
			}
			var eh extHandshake
			if err := bencode.Unmarshal(body[1:], &eh); err != nil {
				return nil, nil, fmt.Errorf("malformed extended handshake: %w", err)
			}
			id := eh.M[pp.ExtensionNameMetadata]
			if id <= 0 || id > 255 {
				return nil, nil, errors.New("peer does not serve the info (no ut_metadata)")
			}
			if eh.MetadataSize <= 0 || eh.MetadataSize > c.cfg.MaxInfoSize {
				return nil, nil, fmt.Errorf("peer announces an info of %d bytes (at most %d taken)", eh.MetadataSize, c.cfg.MaxInfoSize)
			}
			info = make([]byte, eh.MetadataSize)
			left = (eh.MetadataSize + metadataPiece - 1) / metadataPiece
			got = make([]bool, left)
			var reqs []byte
			for i := range left {
				b, _ := bencode.Marshal(pp.ExtendedMetadataRequestMsg{Type: pp.RequestMetadataExtensionMsgType, Piece: i})
				reqs = appendExtended(reqs, byte(id), b)
			}
			if _, err := conn.Write(reqs); err != nil {
				return nil, nil, err
			}
		case metadataID:
			if info == nil {
				return nil, nil, errors.New("info data before the extended handshake")
			}
			rd := bytes.NewReader(body[1:])
			d := bencode.NewDecoder(rd)
			var m pp.ExtendedMetadataRequestMsg
			if err := d.Decode(&m); err != nil {
				return nil, nil, fmt.Errorf("malformed ut_metadata message: %w", err)
			}
			switch m.Type {
			case pp.RejectMetadataExtensionMsgType:
				return nil, nil, errors.New("peer rejected a request for the info")
			case pp.DataMetadataExtensionMsgType:
			default:
				continue
			}
			data := body[1+int(d.Offset):]
			if m.Piece < 0 || m.Piece >= len(got) || m.TotalSize != len(info) {
				return nil, nil, fmt.Errorf("info piece %d of %d bytes does not fit", m.Piece, m.TotalSize)
			}
			want := min(metadataPiece, len(info)-m.Piece*metadataPiece)
			if len(data) != want {
				return nil, nil, fmt.Errorf("info piece %d has %d bytes, want %d", m.Piece, len(data), want)
			}
			if got[m.Piece] {
				continue
			}
			copy(info[m.Piece*metadataPiece:], data)
			got[m.Piece] = true
			if left--; left == 0 {
				if sha1.Sum(info) != ih {
					return nil, nil, ErrBadInfo
				}
				return info, parkedIf(parkable, pc), nil
			}
		}
	}
}

// parkedIf returns pc if ok, else nil.
func parkedIf(ok bool, pc *parkedConn) *parkedConn {
	if ok {
		return pc
	}
	return nil
}
