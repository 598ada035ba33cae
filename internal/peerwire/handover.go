package peerwire

import (
	"bufio"
	"net"
	"slices"
	"time"

	"github.com/anacrolix/torrent/metainfo"
	pp "github.com/anacrolix/torrent/peer_protocol"
)

// FetchInfo's connections are not closed when it returns: those that
// delivered the info, or had offered it and were between two messages
// when it came, are parked (nothing read from or written to them) for the
// torrent's download. A dial of the torrent to the same address (its
// download's, or Connect's) takes the connection over instead: what the
// peer sent during the info fetch (its bitfield or haves, its extended
// handshake, its choke state) is replayed into the torrent, the pieces
// the torrent has go to the peer as haves (the info fetch announced
// HaveNone, after which a bitfield may not come), and a second extended
// handshake offers the torrent's extensions. A parked connection that no
// dial takes within parkFor closes.

// defaultParkFor is how long FetchInfo's connections wait for a dial of
// the torrent.
const defaultParkFor = 30 * time.Second

// maxReplay bounds the bytes of messages a parked connection keeps to
// replay (a bitfield of 1<<20 pieces is 128 KiB): a peer that sent more
// during the info fetch is not parked.
const maxReplay = 192 << 10

// parkedConn is a connection FetchInfo opened, waiting for the torrent's
// download.
type parkedConn struct {
	conn   net.Conn
	r      *bufio.Reader
	h      handshake
	addr   string
	replay []rawMsg // what the peer sent besides the info, in order
	size   int      // bytes of replay
	timer  *time.Timer
}

// rawMsg is a message read from a peer: its type and payload.
type rawMsg struct {
	typ  pp.MessageType
	body []byte
}

// keep records a message the peer sent during the info fetch, and
// reports false once they pass maxReplay.
func (pc *parkedConn) keep(typ pp.MessageType, body []byte) bool {
	pc.size += 1 + len(body)
	if pc.size > maxReplay {
		return false
	}
	pc.replay = append(pc.replay, rawMsg{typ, slices.Clone(body)})
	return true
}

// park holds pcs, FetchInfo's connections for ih, until a dial of the
// torrent takes them or c.parkFor passes.
func (c *Client) park(ih metainfo.Hash, pcs []*parkedConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		for _, pc := range pcs {
			pc.conn.Close()
		}
		return
	}
	m := c.parked[ih]
	if m == nil {
		m = map[string]*parkedConn{}
		c.parked[ih] = m
	}
	for _, pc := range pcs {
		if old := m[pc.addr]; old != nil {
			old.timer.Stop()
			old.conn.Close()
		}
		m[pc.addr] = pc
		pc.timer = time.AfterFunc(c.parkFor, func() {
			c.mu.Lock()
			mine := c.parked[ih][pc.addr] == pc
			if mine {
				c.dropParked(ih, pc.addr)
			}
			c.mu.Unlock()
			if mine {
				pc.conn.Close()
			}
		})
	}
}

// dropParked forgets the parked connection of ih to addr. c.mu is held.
func (c *Client) dropParked(ih metainfo.Hash, addr string) {
	delete(c.parked[ih], addr)
	if len(c.parked[ih]) == 0 {
		delete(c.parked, ih)
	}
}

// unpark returns the parked connection of ih to addr, if any, and no
// longer holds it.
func (c *Client) unpark(ih metainfo.Hash, addr string) *parkedConn {
	c.mu.Lock()
	defer c.mu.Unlock()
	pc := c.parked[ih][addr]
	if pc != nil {
		pc.timer.Stop()
		c.dropParked(ih, addr)
	}
	return pc
}

// parkedAddrs returns the addresses of ih's parked connections.
func (c *Client) parkedAddrs(ih metainfo.Hash) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for a := range c.parked[ih] {
		out = append(out, a)
	}
	return out
}

// closeParked closes ih's parked connections.
func (c *Client) closeParked(ih metainfo.Hash) {
	for _, a := range c.parkedAddrs(ih) {
		if pc := c.unpark(ih, a); pc != nil {
			pc.conn.Close()
		}
	}
}

// replay hands p the messages its peer sent during the info fetch.
func (p *Peer) replay(pc *parkedConn) error {
	for _, m := range pc.replay {
		if err := p.handle(m.typ, m.body); err != nil {
			return err
		}
	}
	return nil
}
