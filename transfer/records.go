package transfer

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"net/netip"
	"slices"
	"time"

	"github.com/anacrolix/torrent"
	pp "github.com/anacrolix/torrent/peer_protocol"

	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
)

// RecordExtension is the name of the BEP 10 extension by which relay peers
// in a bundle's swarm tell each other of the newest signed packet they
// hold of the bundle's key (docs/spec/relay-record.md). Clients that do
// not know it never receive it.
const RecordExtension pp.ExtensionName = "relay_record"

// A relay_record message is the key (32 bytes) and the pkarr relay body:
// signature (64), seq (8, big-endian), DNS packet (at most
// record.MaxPacketSize, so that it fits BEP 44's v).
const (
	recordHeader = ed25519.PublicKeySize + ed25519.SignatureSize + 8
	// MaxRecordMessage is the largest relay_record payload: a longer one
	// is dropped unread.
	MaxRecordMessage = recordHeader + record.MaxPacketSize
)

// Per peer, relay_record messages are sent at most one every recordGap,
// and taken at most recordBurst in a row, then one every recordGap: a
// peer has nothing to say more often than a publisher signs.
const (
	recordGap   = time.Second
	recordBurst = 4
	recordQueue = 64 // packets checked and waiting for Config.OnRecord
)

// recordConn is a connection whose peer takes relay_record messages, on
// either engine: torrentRecordConn or wireRecordConn (wirerecords.go).
// Its values are comparable: they name the connection in
// Client.recordPeers.
type recordConn interface {
	// sendRecord sends the peer a relay_record message.
	sendRecord(payload []byte) error
	// peerAddr is the peer's address, for logs.
	peerAddr() string
}

// torrentRecordConn is a connection of the torrent library's engine.
type torrentRecordConn struct{ pc *torrent.PeerConn }

func (r torrentRecordConn) sendRecord(b []byte) error {
	return r.pc.WriteExtendedMessage(RecordExtension, b)
}

func (r torrentRecordConn) peerAddr() string { return connAddr(r.pc).String() }

// recordPeer is a connection whose peer takes relay_record messages.
type recordPeer struct {
	key      signer.PublicKey           // its bundle's key
	id       [20]byte                   // its peer ID
	addr     netip.AddrPort             // where it can be dialled (see swarmAddrs), or invalid
	sent     map[signer.PublicKey]int64 // by key, the highest seq sent to it or heard from it
	nextSend time.Time                  // when it may be sent the next
	tokens   int                        // messages it may still send before the next refill
	refill   time.Time                  // when its tokens were last refilled
}

// swarmKeys returns the keys whose packets a swarm of key's bundles
// carries: key, and Config.RecordKeys'. c.mu is held.
func (c *Client) swarmKeys(key signer.PublicKey) []signer.PublicKey {
	keys := []signer.PublicKey{key}
	if c.cfg.RecordKeys != nil {
		keys = append(keys, c.cfg.RecordKeys(key)...)
	}
	return keys
}

// EncodeRecord returns the relay_record payload of p.
func EncodeRecord(p *record.SignedPacket) []byte {
	return append(p.Key[:], p.Body()...)
}

// DecodeRecord parses a relay_record payload and checks its signature.
// It refuses a payload over MaxRecordMessage before reading it.
func DecodeRecord(b []byte) (*record.SignedPacket, error) {
	if len(b) > MaxRecordMessage {
		return nil, record.ErrTooLarge
	}
	if len(b) < recordHeader {
		return nil, record.ErrMalformed
	}
	var key signer.PublicKey
	copy(key[:], b)
	return record.ParseBody(key, b[ed25519.PublicKeySize:])
}

// recordSeq reads the seq of a relay_record payload without checking it.
func recordSeq(b []byte) int64 {
	return int64(binary.BigEndian.Uint64(b[ed25519.PublicKeySize+ed25519.SignatureSize:]))
}

// ShareRecord makes p the newest packet of its key this client holds, if
// it is newer than the one it held, and sends it to every peer of the
// key's bundles that takes relay_record messages and has not got it (at
// most one message a peer every second). Call it only with a packet that
// passed the verification chain: peers act on it.
func (c *Client) ShareRecord(p *record.SignedPacket) {
	if c.cfg.OnRecord == nil {
		return
	}
	c.mu.Lock()
	if cur := c.records[p.Key]; cur == nil || p.Seq > cur.Seq {
		c.records[p.Key] = p
	}
	c.mu.Unlock()
	c.wakeRecords()
}

func (c *Client) wakeRecords() {
	select {
	case c.recordWake <- struct{}{}:
	default:
	}
}

// onRecordHandshake notes a peer that takes relay_record messages, and
// has the newest packet of its bundle's key sent to it.
func (c *Client) onRecordHandshake(pc *torrent.PeerConn, m *pp.ExtendedHandshakeMessage) {
	if c.cfg.OnRecord == nil || m.M[RecordExtension] == 0 {
		return
	}
	k, ok := keyOf(pc)
	if !ok {
		return
	}
	c.mu.Lock()
	var key signer.PublicKey
	if a := c.bundles[k.ih]; a != nil {
		key = a.key
	}
	c.mu.Unlock()
	addr := connAddr(pc)
	if pc.Discovery == torrent.PeerSourceIncoming {
		addr = netip.AddrPort{}
		if m.Port > 0 && m.Port <= 65535 && connAddr(pc).IsValid() {
			addr = netip.AddrPortFrom(connAddr(pc).Addr(), uint16(m.Port))
		}
	}
	c.addRecordPeer(torrentRecordConn{pc}, key, pc.PeerID, addr)
}

// addRecordPeer notes a connection whose peer takes relay_record
// messages, in a bundle of key (none: the bundle's key is not known, and
// the peer is not noted), that can be dialled at addr (or not, invalid),
// and has the newest packet of key sent to it.
func (c *Client) addRecordPeer(conn recordConn, key signer.PublicKey, id [20]byte, addr netip.AddrPort) {
	if key.IsZero() {
		return
	}
	c.mu.Lock()
	c.recordPeers[conn] = &recordPeer{key: key, id: id, addr: addr, sent: make(map[signer.PublicKey]int64), tokens: recordBurst, refill: time.Now()}
	c.mu.Unlock()
	c.wakeRecords()
}

// onRecordMessage takes a relay_record message of the torrent library's
// engine (see takeRecord). It runs with the torrent client locked.
func (c *Client) onRecordMessage(ev torrent.PeerConnReadExtensionMessageEvent) {
	if c.cfg.OnRecord == nil || ev.ExtensionNumber == pp.HandshakeExtendedID {
		return
	}
	name, _, err := ev.PeerConn.LocalLtepProtocolMap.LookupId(ev.ExtensionNumber)
	if err != nil || name != RecordExtension {
		return
	}
	c.takeRecord(torrentRecordConn{ev.PeerConn}, ev.Payload)
}

// takeRecord takes a relay_record message b on conn: from a peer that
// said it speaks the extension, about its bundle's key, within its rate,
// no larger than MaxRecordMessage, newer than what this client holds,
// and signed by the key. Anything else is dropped. What is left goes to
// Config.OnRecord, from the client's own goroutine.
func (c *Client) takeRecord(conn recordConn, b []byte) {
	c.mu.Lock()
	rp := c.recordPeers[conn]
	ok := rp != nil && len(b) <= MaxRecordMessage && len(b) >= recordHeader && rp.take(time.Now())
	if ok {
		k := signer.PublicKey(b[:ed25519.PublicKeySize])
		cur := c.records[k]
		ok = slices.Contains(c.swarmKeys(rp.key), k) && (cur == nil || recordSeq(b) > cur.Seq)
	}
	c.mu.Unlock()
	if !ok {
		c.recordsDropped.Add(1)
		return
	}
	p, err := DecodeRecord(b)
	if err != nil {
		c.recordsDropped.Add(1)
		c.log.Debug("dropped a relay_record message", "peer", conn.peerAddr(), "err", err)
		return
	}
	c.mu.Lock()
	if rp.sent[p.Key] < p.Seq {
		rp.sent[p.Key] = p.Seq // it has it: not sent back
	}
	c.mu.Unlock()
	select {
	case c.recordIn <- p:
	default:
		c.recordsDropped.Add(1)
	}
}

// take reports whether a peer may send a message now, and counts it.
func (rp *recordPeer) take(now time.Time) bool {
	if n := int(now.Sub(rp.refill) / recordGap); n > 0 {
		rp.tokens = min(recordBurst, rp.tokens+n)
		rp.refill = rp.refill.Add(time.Duration(n) * recordGap)
	}
	if rp.tokens == 0 {
		return false
	}
	rp.tokens--
	return true
}

// RecordsDropped counts the relay_record messages dropped unread or
// refused: over a peer's rate, too large, malformed, about another key,
// not newer than what the client holds, or not signed by their key.
func (c *Client) RecordsDropped() int64 { return c.recordsDropped.Load() }

// recordLoop hands received packets to Config.OnRecord and sends the newest
// packet of each key to the peers that lack it, until ctx ends.
func (c *Client) recordLoop(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-c.recordIn:
			c.cfg.OnRecord(p)
			continue
		case <-c.recordWake:
		case <-timer.C:
		}
		if next := c.sendRecords(); next > 0 {
			timer.Reset(next)
		}
	}
}

// sendRecords sends each peer that lacks it the newest packet of its
// bundle's key, where its gap allows, and returns when to look again for
// those it did not (0: none left).
func (c *Client) sendRecords() time.Duration {
	type send struct {
		conn    recordConn
		payload []byte
	}
	var sends []send
	var next time.Duration
	now := time.Now()
	c.mu.Lock()
	// A peer connected twice (one peer ID; the wire engine keeps both)
	// is sent a packet once, on either connection.
	had := make(map[[20]byte]map[signer.PublicKey]int64)
	for _, rp := range c.recordPeers {
		m := had[rp.id]
		if m == nil {
			m = make(map[signer.PublicKey]int64)
			had[rp.id] = m
		}
		for k, seq := range rp.sent {
			m[k] = max(m[k], seq)
		}
	}
	for conn, rp := range c.recordPeers {
		for _, k := range c.swarmKeys(rp.key) {
			p := c.records[k]
			if p == nil || p.Seq <= rp.sent[k] {
				continue
			}
			if p.Seq <= had[rp.id][k] {
				rp.sent[k] = p.Seq
				continue
			}
			if wait := rp.nextSend.Sub(now); wait > 0 {
				if next == 0 || wait < next {
					next = wait
				}
				break
			}
			rp.sent[k], rp.nextSend = p.Seq, now.Add(recordGap)
			had[rp.id][k] = p.Seq
			sends = append(sends, send{conn, EncodeRecord(p)})
		}
	}
	c.mu.Unlock()
	for _, s := range sends {
		if err := s.conn.sendRecord(s.payload); err != nil {
			c.log.Debug("failed to send a relay_record message", "peer", s.conn.peerAddr(), "err", err)
		}
	}
	return next
}

// recordProtocols returns the extension map of a connection: the torrent
// library's, and relay_record.
func (c *Client) recordProtocols(pc *torrent.PeerConn) {
	if c.cfg.OnRecord == nil {
		return
	}
	c.ltepOnce.Do(func() {
		m := *pc.LocalLtepProtocolMap
		m.Index = slices.Clone(m.Index)
		m.AddUserProtocol(RecordExtension)
		c.ltep = &m
	})
	pc.LocalLtepProtocolMap = c.ltep
}

// forgetRecordPeer drops a closed connection's relay_record state.
func (c *Client) forgetRecordPeer(conn recordConn) {
	c.mu.Lock()
	delete(c.recordPeers, conn)
	c.mu.Unlock()
}

// RecordPeers returns how many connected peers take relay_record messages.
func (c *Client) RecordPeers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.recordPeers)
}

// RecordPeersOf returns how many peers (by peer ID) connected in swarms
// of key's bundles take relay_record messages: peers that pass on a newer
// packet of key as soon as they hold one.
func (c *Client) RecordPeersOf(key signer.PublicKey) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := make(map[[20]byte]bool)
	for _, rp := range c.recordPeers {
		if slices.Contains(c.swarmKeys(rp.key), key) {
			seen[rp.id] = true
		}
	}
	return len(seen)
}
