package dht

import (
	"net"
	"time"

	"github.com/anacrolix/utp"
)

// UTP returns the listener for uTP (BEP 29) connections on the node's UDP
// socket: BitTorrent peers learn relay's port number from the DHT and
// most (libtorrent, Transmission, webtorrent) try uTP first on it. A
// datagram that is not uTP goes to the DHT server (a KRPC message is a
// bencoded dictionary, whose first byte 'd' is never a uTP header's).
// Connections nobody accepts wait in a small backlog, then are reset.
// Closing the node closes it.
func (n *Node) UTP() net.Listener {
	return n.utp
}

// dhtConn is the uTP socket as the DHT server reads and writes it. Its
// Close only ends the server's reads (the uTP socket's ReadFrom returns on
// nothing else): Node.Close closes the socket, and the uTP connections
// on it, itself.
type dhtConn struct{ *utp.Socket }

func (c dhtConn) Close() error {
	return c.Socket.SetReadDeadline(time.Unix(1, 0))
}
