package transfer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"

	"github.com/anacrolix/utp"
)

// uTP (BEP 29) on the wire engine, as on the torrent library's: without
// Config.UTP the client accepts uTP connections on the DHT node's socket
// (dht.Node.UTP), where peers that learnt its port from the DHT dial
// first, and dials TCP only; with it, a uTP socket of its own on the
// port number of its TCP one accepts them, and a dial tries TCP and uTP
// at once and keeps the first connection made.

// utpSocket opens the client's own uTP socket with Config.UTP, on host
// and its TCP port number; nil without it.
func (c *Client) utpSocket(host string) (*utp.Socket, error) {
	if !c.cfg.UTP {
		return nil, nil
	}
	s, err := utp.NewSocket(hostNetwork("udp", host), net.JoinHostPort(host, strconv.Itoa(c.port)))
	if err != nil {
		return nil, fmt.Errorf("failed to listen for uTP: %w", err)
	}
	return s, nil
}

// serveUTP accepts peers over uTP on s, the client's own socket, or
// with none on the DHT node's.
func (w *wireClient) serveUTP(s *utp.Socket, perIP int) {
	c := w.c
	if s != nil {
		w.serve("uTP", closingListener{newPeerListener(s, perIP, c.ctx.Done()), s})
		return
	}
	if d, ok := c.cfg.DHT.(utpNode); ok && c.cfg.DHT != nil {
		if l := d.UTP(); l != nil {
			shared := &sharedListener{Listener: l, done: make(chan struct{})}
			w.serve("uTP on the DHT's socket", closingListener{newPeerListener(shared, perIP, c.ctx.Done()), shared})
		}
	}
}

// serve accepts peers for w on ln until the client closes.
func (w *wireClient) serve(what string, ln net.Listener) {
	w.wg.Go(func() {
		if err := w.pw.Serve(w.c.ctx, ln); err != nil {
			w.c.log.Warn("stopped accepting peers", "on", what, "err", err)
		}
	})
}

// sharedListener is a listener of someone else's (the DHT node's uTP
// one) that the wire engine's Serve may close: its Close ends Accepts
// without closing the socket. The Accept under way then stays blocked
// until the next connection comes (which it closes) or the socket
// closes with its owner, as the torrent library's Accept on that
// listener does after its client closed.
type sharedListener struct {
	net.Listener
	once    sync.Once
	done    chan struct{}
	mu      sync.Mutex
	pending chan accepted // the Accept under way, or nil
}

type accepted struct {
	conn net.Conn
	err  error
}

// Accept returns the next connection, or net.ErrClosed once Close was
// called.
func (l *sharedListener) Accept() (net.Conn, error) {
	select {
	case <-l.done:
		return nil, net.ErrClosed
	default:
	}
	l.mu.Lock()
	ch := l.pending
	if ch == nil {
		ch = make(chan accepted, 1)
		l.pending = ch
		go func() {
			conn, err := l.Listener.Accept()
			ch <- accepted{conn, err}
		}()
	}
	l.mu.Unlock()
	select {
	case a := <-ch:
		l.mu.Lock()
		l.pending = nil
		l.mu.Unlock()
		return a.conn, a.err
	case <-l.done:
		l.mu.Lock()
		mine := l.pending == ch
		l.pending = nil
		l.mu.Unlock()
		if mine {
			go func() {
				if a := <-ch; a.conn != nil {
					a.conn.Close()
				}
			}()
		}
		return nil, net.ErrClosed
	}
}

// Close ends Accepts; the socket stays open.
func (l *sharedListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// dialFirst dials addr with each of dials at once, returns the first
// connection made and closes the others; it returns once every dial
// has ended.
func dialFirst(ctx context.Context, addr string, dials ...func(context.Context, string) (net.Conn, error)) (net.Conn, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan accepted, len(dials))
	for _, d := range dials {
		go func() {
			conn, err := d(ctx, addr)
			ch <- accepted{conn, err}
		}()
	}
	var won net.Conn
	var errs []error
	for range dials {
		a := <-ch
		switch {
		case a.err != nil:
			errs = append(errs, a.err)
		case won == nil:
			won = a.conn
			cancel()
		default:
			a.conn.Close()
		}
	}
	if won != nil {
		return won, nil
	}
	return nil, errors.Join(errs...)
}
