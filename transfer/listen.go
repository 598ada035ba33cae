package transfer

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"sync"

	"github.com/anacrolix/torrent"
)

// DefaultConnsPerIP is how many connections from one IP address a Client
// accepts at once, by default (see Config.ConnsPerIP).
const DefaultConnsPerIP = 16

// peerListener is a socket peers connect to (relay's TCP one, the DHT
// node's uTP one), as the torrent library accepts from it. It bounds the
// connections of each IP address before any handshake: one host that
// opened hundreds of idle connections to a seeder took every one of its
// places (the library keeps 50 a bundle, and makes room only by closing
// connections older than a minute), and no fetch could get one.
type peerListener struct {
	inner torrent.Listener
	max   int             // connections per IP address; 0 is no bound
	done  <-chan struct{} // closed when the client closes

	mu    sync.Mutex
	perIP map[netip.Addr]int
}

func newPeerListener(inner torrent.Listener, perIP int, done <-chan struct{}) *peerListener {
	return &peerListener{inner: inner, max: perIP, done: done, perIP: make(map[netip.Addr]int)}
}

// listenTCP listens on host:port ("" is every interface; an IPv4 host
// IPv4 only, an IPv6 host IPv6 only), on nw or else the system's TCP.
func listenTCP(nw Network, host string, port int) (net.Listener, error) {
	network := hostNetwork("tcp", host)
	address := net.JoinHostPort(host, strconv.Itoa(port))
	if nw != nil {
		return nw.Listen(context.Background(), network, address)
	}
	// BitTorrent connections keep themselves alive.
	lc := net.ListenConfig{KeepAlive: -1}
	return lc.Listen(context.Background(), network, address)
}

// hostNetwork returns network ("tcp", "udp") for listening on host: IPv4
// only (network+"4") for an IPv4 address, IPv6 only for an IPv6 one,
// both for a name or "".
func hostNetwork(network, host string) string {
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Unmap().Is4() {
			return network + "4"
		}
		return network + "6"
	}
	return network
}

// Addr returns the socket's address.
func (l *peerListener) Addr() net.Addr { return l.inner.Addr() }

// Accept returns the next connection from an address that holds fewer
// than the bound; those beyond it are closed at once. Once the socket
// fails (it was closed), it waits for the client to close before it
// returns the error: the torrent library accepts again at once after an
// error while it runs.
func (l *peerListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.inner.Accept()
		if err != nil {
			<-l.done
			return nil, err
		}
		ip := remoteIP(conn)
		l.mu.Lock()
		full := l.max > 0 && l.perIP[ip] >= l.max
		if !full {
			l.perIP[ip]++
		}
		l.mu.Unlock()
		if full {
			conn.Close()
			continue
		}
		return &countedConn{Conn: conn, l: l, ip: ip}, nil
	}
}

func remoteIP(conn net.Conn) netip.Addr {
	ap, err := netip.ParseAddrPort(conn.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// countedConn is an accepted connection, counted against its address
// until it is closed.
type countedConn struct {
	net.Conn
	l    *peerListener
	ip   netip.Addr
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		if c.l.perIP[c.ip]--; c.l.perIP[c.ip] <= 0 {
			delete(c.l.perIP, c.ip)
		}
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// tcpDialer dials peers over TCP for the torrent library, on nw when it
// is not nil.
func tcpDialer(nw Network) torrent.Dialer {
	if nw != nil {
		return torrent.NetworkDialer{Network: "tcp", Dialer: nw}
	}
	return torrent.NetworkDialer{Network: "tcp", Dialer: &net.Dialer{FallbackDelay: -1, KeepAlive: -1}}
}
