package dht_test

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/anacrolix/utp"
)

// TestNodeSpeaksUTP: a BitTorrent client that tries uTP on the port a
// relay peer announced reaches the DHT node's socket, and gets a uTP
// connection that carries data both ways (relay's transfer package takes
// them from Node.UTP); the node goes on answering DHT queries on that
// socket.
func TestNodeSpeaksUTP(t *testing.T) {
	node := sharedNet(t).Nodes[3]
	accepted := make(chan []byte, 1)
	go func() {
		conn, err := node.UTP().Accept()
		if err != nil {
			accepted <- nil
			return
		}
		defer conn.Close()
		b := make([]byte, 5)
		io.ReadFull(conn, b)
		conn.Write([]byte("pong!"))
		accepted <- b
	}()
	s, err := utp.NewSocket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.CloseNow()
	conn, err := s.Dial(node.Addr().String())
	if err != nil {
		t.Fatalf("no uTP connection to the node's socket: %v", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte("ping!")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(conn, got); err != nil || string(got) != "pong!" {
		t.Fatalf("read %q, %v over uTP; want pong!", got, err)
	}
	if b := <-accepted; string(b) != "ping!" {
		t.Fatalf("the node's side read %q", b)
	}

	// DHT queries on the same socket still get answers.
	c, err := utp.NewSocket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	ping := []byte("d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe")
	if _, err := c.WriteTo(ping, udp(node)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	reply := make([]byte, 1500)
	n, _, err := c.ReadFrom(reply)
	if err != nil {
		t.Fatalf("no answer to a ping after the uTP connection: %v", err)
	}
	if got := reply[:n]; !bytes.Contains(got, []byte("1:y1:r")) || !bytes.Contains(got, []byte("1:t2:aa")) {
		t.Errorf("answer to a ping: %q, want a KRPC response", got)
	}
}
