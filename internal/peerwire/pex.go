package peerwire

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/anacrolix/torrent/bencode"
	pp "github.com/anacrolix/torrent/peer_protocol"
)

// Peer exchange (BEP 11, ut_pex): each peer that offers it is told, at
// most once every pexEvery, which peers the torrent is connected to (the
// addresses they listen on: the one dialled, or an accepted peer's IP
// with the port of its extended handshake), as added and dropped since
// the last message. What peers tell goes to the torrent's download, which
// dials it after the addresses its caller gave.

const (
	pexName = "ut_pex"
	// pexMaxAdded bounds the peers a message adds (BEP 11: 50); more sent
	// are not taken, and the rest to tell waits for the next message.
	pexMaxAdded = 50
	// pexMaxPerConn bounds the addresses one connection's messages add in
	// all.
	pexMaxPerConn = 200
	// pexMaxPayload bounds a message taken: 50 IPv6 peers added and as
	// many dropped, with their flags, take 2.6 KB.
	pexMaxPayload = 8 << 10
	// pexMaxCandidates bounds the addresses from peer exchange a download
	// keeps to dial; one that failed pexMaxFailures times is forgotten.
	pexMaxCandidates = 200
	pexMaxFailures   = 3
)

// BEP 11 flags of an added peer.
const (
	pexSeed      = byte(pp.PexSeedUploadOnly) // it has every piece
	pexReachable = byte(pp.PexOutgoingConn)   // it was dialled: it accepts connections
)

// pexTiming is how often peer exchange runs: a peer is sent a message at
// most every Every, and asked again after Retry when there was nothing to
// tell; a peer's message that comes sooner than Every/2 after the last
// one taken is ignored.
type pexTiming struct{ every, retry time.Duration }

var defaultPEXTiming = pexTiming{every: time.Minute, retry: 10 * time.Second}

// pexMsg is a BEP 11 message: compact addresses (4 or 16 bytes of IP, 2
// of port) and a flags byte for each added one.
type pexMsg struct {
	Added    string `bencode:"added,omitempty"`
	AddedF   string `bencode:"added.f,omitempty"`
	Added6   string `bencode:"added6,omitempty"`
	Added6F  string `bencode:"added6.f,omitempty"`
	Dropped  string `bencode:"dropped,omitempty"`
	Dropped6 string `bencode:"dropped6,omitempty"`
}

// pexPeer is a peer a message adds.
type pexPeer struct {
	addr  netip.AddrPort
	flags byte
}

// parsePEX decodes a ut_pex message's payload into the peers it adds and
// drops.
func parsePEX(payload []byte) (added []pexPeer, dropped []netip.AddrPort, err error) {
	var m pexMsg
	if err := bencode.Unmarshal(payload, &m); err != nil {
		return nil, nil, fmt.Errorf("malformed ut_pex message: %w", err)
	}
	for _, l := range []struct {
		addrs, flags string
		ipLen        int
	}{{m.Added, m.AddedF, 4}, {m.Added6, m.Added6F, 16}} {
		as, err := compactAddrs(l.addrs, l.ipLen)
		if err != nil {
			return nil, nil, err
		}
		for i, a := range as {
			var f byte
			if i < len(l.flags) {
				f = l.flags[i]
			}
			added = append(added, pexPeer{a, f})
		}
	}
	for _, l := range []struct {
		addrs string
		ipLen int
	}{{m.Dropped, 4}, {m.Dropped6, 16}} {
		as, err := compactAddrs(l.addrs, l.ipLen)
		if err != nil {
			return nil, nil, err
		}
		dropped = append(dropped, as...)
	}
	return added, dropped, nil
}

// compactAddrs decodes compact addresses of ipLen-byte IPs.
func compactAddrs(s string, ipLen int) ([]netip.AddrPort, error) {
	n := ipLen + 2
	if len(s)%n != 0 {
		return nil, fmt.Errorf("malformed ut_pex message: %d bytes of %d-byte addresses", len(s), n)
	}
	out := make([]netip.AddrPort, 0, len(s)/n)
	for i := 0; i < len(s); i += n {
		ip, _ := netip.AddrFromSlice([]byte(s[i : i+ipLen]))
		out = append(out, netip.AddrPortFrom(ip, uint16(s[i+ipLen])<<8|uint16(s[i+ipLen+1])))
	}
	return out, nil
}

// marshalPEX encodes a ut_pex message's payload.
func marshalPEX(added []pexPeer, dropped []netip.AddrPort) []byte {
	var m pexMsg
	var a4, f4, a6, f6, d4, d6 []byte
	appendAddr := func(b []byte, a netip.AddrPort) []byte {
		b = append(b, a.Addr().AsSlice()...)
		return append(b, byte(a.Port()>>8), byte(a.Port()))
	}
	for _, p := range added {
		if p.addr.Addr().Is4() {
			a4, f4 = appendAddr(a4, p.addr), append(f4, p.flags)
		} else {
			a6, f6 = appendAddr(a6, p.addr), append(f6, p.flags)
		}
	}
	for _, a := range dropped {
		if a.Addr().Is4() {
			d4 = appendAddr(d4, a)
		} else {
			d6 = appendAddr(d6, a)
		}
	}
	m.Added, m.AddedF, m.Added6, m.Added6F, m.Dropped, m.Dropped6 = string(a4), string(f4), string(a6), string(f6), string(d4), string(d6)
	b, err := bencode.Marshal(m)
	if err != nil {
		panic(err) // a struct of strings
	}
	return b
}

// addrPortOf returns the IP address and port of a net.Addr, IPv4 unmapped,
// or false for an address that is not one (a test's pipe).
func addrPortOf(a net.Addr) (netip.AddrPort, bool) {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}

// pexOn reports whether p and this client exchange peers. t.mu is held.
func (p *Peer) pexOn() bool { return !p.c.cfg.NoPEX && p.theirExt[pexName] != 0 }

// sharePEX sends p the peers the torrent gained and lost since the last
// message (those in scope for it, see inScope), if any and if the last
// was at least pexEvery ago, and returns when to look again.
func (p *Peer) sharePEX() time.Duration {
	t := p.t
	tm := p.c.pex
	t.mu.Lock()
	defer t.mu.Unlock()
	if !p.pexOn() {
		return tm.every
	}
	if wait := tm.every - time.Since(p.pexSentAt); !p.pexSentAt.IsZero() && wait > 0 {
		return wait
	}
	to, ok := addrPortOf(p.conn.RemoteAddr())
	if !ok {
		return tm.every
	}
	now := map[netip.AddrPort]byte{}
	for q := range t.peers {
		if q == p || !q.listen.IsValid() || !inScope(q.listen.Addr(), to.Addr()) {
			continue
		}
		var f byte
		if q.hasAll {
			f |= pexSeed
		}
		if q.dialed {
			f |= pexReachable
		}
		now[q.listen] = f
	}
	var added []pexPeer
	var dropped []netip.AddrPort
	for a, f := range now {
		if _, told := p.pexTold[a]; !told && len(added) < pexMaxAdded {
			added = append(added, pexPeer{a, f})
		}
	}
	for a := range p.pexTold {
		if _, ok := now[a]; !ok && len(dropped) < pexMaxAdded {
			dropped = append(dropped, a)
		}
	}
	if len(added) == 0 && len(dropped) == 0 {
		return tm.retry
	}
	if p.pexTold == nil {
		p.pexTold = map[netip.AddrPort]struct{}{}
	}
	for _, a := range added {
		p.pexTold[a.addr] = struct{}{}
	}
	for _, a := range dropped {
		delete(p.pexTold, a)
	}
	p.pexSentAt = time.Now()
	p.send(appendExtended(nil, p.theirExt[pexName], marshalPEX(added, dropped)))
	return tm.every
}

// onPEX hands the peers a ut_pex message of p adds to the torrent's
// download, if one runs: at most pexMaxAdded a message and pexMaxPerConn
// from the connection; none from a message that is malformed, larger
// than pexMaxPayload, or sooner than pexEvery/2 after the last taken;
// none that the client should not dial (see pexUsable).
func (p *Peer) onPEX(payload []byte) {
	t := p.t
	if len(payload) > pexMaxPayload {
		return
	}
	t.mu.Lock()
	early := !p.pexTakenAt.IsZero() && time.Since(p.pexTakenAt) < p.c.pex.every/2
	t.mu.Unlock()
	if early {
		return
	}
	added, _, err := parsePEX(payload)
	if err != nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	p.pexTakenAt = time.Now()
	for _, a := range added[:min(len(added), pexMaxAdded)] {
		if p.pexTaken == pexMaxPerConn {
			break
		}
		if !p.pexUsable(a.addr) {
			continue
		}
		p.pexTaken++
		if t.dl != nil {
			select {
			case t.dl.pex <- a.addr.String():
			default: // the dial loop is behind: the address is dropped
			}
		}
	}
}

// inScope reports whether an address of IP ip means something to a peer
// at IP peer, to be told it or to tell it: one on loopback only to a
// peer on loopback, one on a private or link-local network only to a
// peer on such a network or loopback.
func inScope(ip, peer netip.Addr) bool {
	local := func(ip netip.Addr) bool { return ip.IsPrivate() || ip.IsLinkLocalUnicast() }
	switch {
	case ip.IsLoopback():
		return peer.IsLoopback()
	case local(ip):
		return local(peer) || peer.IsLoopback()
	}
	return true
}

// pexUsable reports whether an address a peer's PEX brings may be
// dialled: a unicast IP and a port; a loopback IP only from a peer on
// loopback, a private or link-local one only from a peer on such a
// network or loopback; never this client's listening address nor the
// peer's own. t.mu is held.
func (p *Peer) pexUsable(a netip.AddrPort) bool {
	ip := a.Addr().Unmap()
	if a.Port() == 0 || !ip.IsValid() || ip.IsUnspecified() || ip.IsMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return false
	}
	from, ok := addrPortOf(p.conn.RemoteAddr())
	if !ok {
		return false
	}
	if !inScope(ip, from.Addr()) {
		return false
	}
	if a == p.listen || a == from {
		return false
	}
	// This client: the end of this connection (the torrent library tells
	// a peer its own address), or its listening port on loopback or the
	// IP the peer reached.
	me, _ := addrPortOf(p.conn.LocalAddr())
	if a == me {
		return false
	}
	if port := p.c.listenPort.Load(); uint32(a.Port()) == port && (ip.IsLoopback() || ip == me.Addr()) {
		return false
	}
	return true
}
