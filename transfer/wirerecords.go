package transfer

import (
	"net/netip"

	"github.com/relay-sh/relay/internal/peerwire"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
)

// relay_record on the wire engine: a peerwire.Extension whose callbacks
// hand the Client's engine-neutral bookkeeping (records.go) the peers
// that offer it and their messages.

// wireRecordConn is a connection of the wire engine (see recordConn).
type wireRecordConn struct{ p *peerwire.Peer }

func (r wireRecordConn) sendRecord(b []byte) error {
	return r.p.SendExtended(string(RecordExtension), b)
}

func (r wireRecordConn) peerAddr() string { return r.p.Addr() }

// recordExtension is relay_record as a peerwire extension. Messages up
// to the wire's bound of an extended message reach takeRecord, which
// counts those over MaxRecordMessage among RecordsDropped.
func (w *wireClient) recordExtension() peerwire.Extension {
	c := w.c
	return peerwire.Extension{
		Name:    string(RecordExtension),
		MaxSize: 128 << 10,
		OnPeer: func(p *peerwire.Peer) {
			var key signer.PublicKey
			if b := w.bundle(record.Infohash(p.Torrent().Infohash())); b != nil {
				key = b.bundleKey()
			}
			addr, _ := p.ListenAddr()
			c.addRecordPeer(wireRecordConn{p}, key, p.ID(), netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port()))
		},
		OnMessage: func(p *peerwire.Peer, payload []byte) { c.takeRecord(wireRecordConn{p}, payload) },
		OnClose:   func(p *peerwire.Peer) { c.forgetRecordPeer(wireRecordConn{p}) },
	}
}
