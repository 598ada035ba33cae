package peerwire

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
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
func (c *Client) FetchInfo(ctx context.Context, ih metainfo.Hash, peers []string, more <-chan string) ([]byte, error) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	type result struct {
		info []byte
		err  error
	}
	results := make(chan result, c.cfg.MaxConns)
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
				b, err := c.infoFromRetrying(ctx, ih, a)
				if err != nil {
					err = fmt.Errorf("peer %s: %w", a, err)
				}
				results <- result{b, err}
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
			if r.err == nil {
				// The others end with ctx; their results go into the
				// buffered channel, and are waited for.
				return r.info, nil
			}
			last = r.err
		}
	}
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
// connection early again, at most infoRetries times.
func (c *Client) infoFromRetrying(ctx context.Context, ih metainfo.Hash, addr string) ([]byte, error) {
	for try := 0; ; try++ {
		b, err := c.infoFrom(ctx, ih, addr)
		if !errors.Is(err, errClosedEarly) || try == infoRetries {
			return b, err
		}
		select {
		case <-ctx.Done():
			return nil, err
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

// infoFrom fetches the info of ih from the peer at addr.
func (c *Client) infoFrom(ctx context.Context, ih metainfo.Hash, addr string) ([]byte, error) {
	hctx, cancel := context.WithTimeout(ctx, c.cfg.HandshakeTimeout)
	conn, err := c.cfg.Dial(hctx, addr)
	cancel()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	deadline := func() { conn.SetDeadline(time.Now().Add(c.cfg.HandshakeTimeout)) }
	deadline()
	ours := handshake{reserved: ourReserved(), infohash: ih, peerID: c.cfg.PeerID}
	if _, err := conn.Write(ours.marshal()); err != nil {
		return nil, err
	}
	r := bufio.NewReaderSize(conn, 64<<10)
	h, err := readHandshake(r)
	if err != nil {
		return nil, closedEarly(err)
	}
	if h.infohash != ih {
		return nil, fmt.Errorf("peer answered for infohash %x", h.infohash)
	}
	if !h.extended() {
		return nil, errors.New("peer does not speak the extension protocol")
	}
	var out []byte
	if h.fast() {
		out = appendMsg(out, pp.HaveNone)
	}
	eh, _ := bencode.Marshal(extHandshake{M: map[string]int{pp.ExtensionNameMetadata: metadataID}, V: Version, Reqq: ourReqq})
	if _, err := conn.Write(appendExtended(out, 0, eh)); err != nil {
		return nil, closedEarly(err)
	}
	var info []byte
	var got []bool
	left := 0
	var body []byte
	for {
		deadline()
		typ, n, err := readHeader(r, 0)
		if err != nil && info == nil {
			err = closedEarly(err)
		}
		if err != nil {
			return nil, err
		}
		if n < 0 {
			continue
		}
		if cap(body) < n {
			body = make([]byte, n)
		}
		body = body[:n]
		if _, err := io.ReadFull(r, body); err != nil {
			return nil, err
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
				return nil, fmt.Errorf("malformed extended handshake: %w", err)
			}
			id := eh.M[pp.ExtensionNameMetadata]
			if id <= 0 || id > 255 {
				return nil, errors.New("peer does not serve the info (no ut_metadata)")
			}
			if eh.MetadataSize <= 0 || eh.MetadataSize > c.cfg.MaxInfoSize {
				return nil, fmt.Errorf("peer announces an info of %d bytes (at most %d taken)", eh.MetadataSize, c.cfg.MaxInfoSize)
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
				return nil, err
			}
		case metadataID:
			if info == nil {
				return nil, errors.New("info data before the extended handshake")
			}
			rd := bytes.NewReader(body[1:])
			d := bencode.NewDecoder(rd)
			var m pp.ExtendedMetadataRequestMsg
			if err := d.Decode(&m); err != nil {
				return nil, fmt.Errorf("malformed ut_metadata message: %w", err)
			}
			switch m.Type {
			case pp.RejectMetadataExtensionMsgType:
				return nil, errors.New("peer rejected a request for the info")
			case pp.DataMetadataExtensionMsgType:
			default:
				continue
			}
			data := body[1+int(d.Offset):]
			if m.Piece < 0 || m.Piece >= len(got) || m.TotalSize != len(info) {
				return nil, fmt.Errorf("info piece %d of %d bytes does not fit", m.Piece, m.TotalSize)
			}
			want := min(metadataPiece, len(info)-m.Piece*metadataPiece)
			if len(data) != want {
				return nil, fmt.Errorf("info piece %d has %d bytes, want %d", m.Piece, len(data), want)
			}
			if got[m.Piece] {
				continue
			}
			copy(info[m.Piece*metadataPiece:], data)
			got[m.Piece] = true
			if left--; left == 0 {
				if sha1.Sum(info) != ih {
					return nil, ErrBadInfo
				}
				return info, nil
			}
		}
	}
}
