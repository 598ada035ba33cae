package dht

// uTP (BEP 29) packet types and version, in the first byte of its header.
const (
	utpVersion = 1
	utpSyn     = 4
	utpReset   = 3
	// utpHeaderLen is the size of a uTP header without extensions.
	utpHeaderLen = 20
)

// relay speaks BitTorrent over TCP only, on the port number of its DHT
// socket, and most BitTorrent clients (libtorrent and those built on it,
// Transmission) try uTP first on the port a peer announced, then TCP once
// uTP fails. Unanswered, a uTP connection attempt fails only after the
// client's connect timeout (libtorrent's utp_connect_timeout: 3 s), so every
// such client waited seconds before it reached a relay seeder. The node's
// socket (guard) answers each uTP SYN with an ST_RESET, as a host with no
// uTP listener should, so those clients go over to TCP at once; every
// other datagram goes on to the DHT server. A KRPC message is a bencoded
// dictionary, whose first byte is 'd', never a uTP header's.
//
// isUTPSyn reports whether datagram p is a uTP SYN.
func isUTPSyn(p []byte) bool {
	return len(p) >= utpHeaderLen && p[0] == utpSyn<<4|utpVersion
}

// utpResetFor returns the ST_RESET that refuses the connection a SYN
// opens: sent on the SYN's connection_id, which the connecting side
// receives on, acknowledging its seq_nr.
func utpResetFor(syn []byte) []byte {
	r := make([]byte, utpHeaderLen)
	r[0] = utpReset<<4 | utpVersion
	copy(r[2:4], syn[2:4])     // connection_id
	copy(r[18:20], syn[16:18]) // ack_nr: the SYN's seq_nr
	return r
}
