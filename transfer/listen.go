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

// tcpListener is the TCP socket peers connect to. relay listens itself,
// not the torrent library, so that it bounds the connections of each IP
// address before any handshake: one host that opened hundreds of idle
// connections to a seeder took every one of its places (the library keeps
// 50 a bundle, and makes room only by closing connections older than a
// minute), and no fetch could get one.
type tcpListener struct {
	net.Listener
	max int // connections per IP address; 0 is no bound

	mu    sync.Mutex
	perIP map[netip.Addr]int
}

// listenTCP listens on host:port ("" is every interface; an IPv4 host
// IPv4 only, an IPv6 host IPv6 only), accepting at most perIP connections
// from one address at a time (0: no bound).
func listenTCP(host string, port, perIP int) (*tcpListener, error) {
	network := "tcp"
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Unmap().Is4() {
			network = "tcp4"
		} else {
			network = "tcp6"
		}
	}
	// BitTorrent connections keep themselves alive.
	lc := net.ListenConfig{KeepAlive: -1}
	l, err := lc.Listen(context.Background(), network, net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return nil, err
	}
	return &tcpListener{Listener: l, max: perIP, perIP: make(map[netip.Addr]int)}, nil
}

// Accept returns the next connection from an address that holds fewer
// than the bound; those beyond it are closed at once.
func (l *tcpListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
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

// conns returns the number of connections from ip open now.
func (l *tcpListener) conns(ip netip.Addr) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.perIP[ip]
}

func remoteIP(conn net.Conn) netip.Addr {
	if ta, ok := conn.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// countedConn is an accepted connection, counted against its address
// until it is closed.
type countedConn struct {
	net.Conn
	l    *tcpListener
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

// tcpDialer dials peers over TCP for the torrent library.
func tcpDialer() torrent.Dialer {
	return torrent.NetworkDialer{Network: "tcp", Dialer: &net.Dialer{FallbackDelay: -1, KeepAlive: -1}}
}
