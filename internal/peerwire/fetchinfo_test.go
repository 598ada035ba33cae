package peerwire

import (
	"bufio"
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// holdConn opens a connection of c's peer id to the torrent at the
// seeder addr, as a client's last connection the seeder has not seen end
// yet, and returns it.
func holdConn(t *testing.T, c *Client, b *bundle, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	h := handshake{reserved: ourReserved(), infohash: b.info2hash(), peerID: c.PeerID()}
	if _, err := conn.Write(h.marshal()); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	if _, err := readHandshake(r); err != nil {
		t.Fatal(err)
	}
	// The seeder's first message comes once it holds the connection.
	conn.SetReadDeadline(time.Now().Add(time.Minute))
	if _, _, err := readHeader(r, 0); err != nil {
		t.Fatal(err)
	}
	return conn
}

// TestFetchInfoRefusedRetried: a seeder running the torrent library's
// client refuses a second connection of one peer id while it holds the
// first; FetchInfo dials it again once the first is gone, and gives up
// after 3 more dials while it stays.
func TestFetchInfoRefusedRetried(t *testing.T) {
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 100 << 10}, 64<<10)
	seed := anacrolixSeeds(t, b)
	var dials atomic.Int64
	var held net.Conn
	var d net.Dialer
	c := New(Config{Dial: func(ctx context.Context, addr string) (net.Conn, error) {
		if dials.Add(1) == 2 {
			held.Close() // the earlier connection ends after one refusal
		}
		return d.DialContext(ctx, "tcp", addr)
	}})
	held = holdConn(t, c, b, seed)
	info, err := c.FetchInfo(ctxFor(t, time.Minute), b.info2hash(), []string{seed}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(info) != string(b.infoBytes) || dials.Load() < 2 {
		t.Errorf("FetchInfo got the info right: %v, after %d dials (want 2 or more)", string(info) == string(b.infoBytes), dials.Load())
	}

	dials.Store(-100) // the held connection stays
	c2 := New(Config{Dial: c.cfg.Dial, PeerID: [20]byte{1, 2, 3}})
	holdConn(t, c2, b, seed)
	_, err = c2.FetchInfo(ctxFor(t, time.Minute), b.info2hash(), []string{seed}, nil)
	if !errors.Is(err, errClosedEarly) {
		t.Errorf("FetchInfo while the seeder holds a connection: %v, want %v", err, errClosedEarly)
	}
	if n := dials.Load() + 100; n != 1+infoRetries {
		t.Errorf("the refusing seeder was dialled %d times, want %d", n, 1+infoRetries)
	}
}
