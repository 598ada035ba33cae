package dht_test

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"
	"time"
)

// TestNodeRefusesUTP: a BitTorrent client that tries uTP on the port a
// relay peer announced reaches the DHT node's socket. It gets an ST_RESET
// for the connection its SYN opened, at once, so it goes over to TCP
// without waiting out its connect timeout; and the node goes on answering
// DHT queries on that socket.
func TestNodeRefusesUTP(t *testing.T) {
	node := sharedNet(t).Nodes[3]
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(node.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))

	// A SYN as libtorrent sends it: type 4, version 1, the connection_id
	// it will receive on, its seq_nr.
	syn := make([]byte, 20)
	syn[0] = 4<<4 | 1
	binary.BigEndian.PutUint16(syn[2:], 0xbeef)
	binary.BigEndian.PutUint32(syn[4:], 123456)
	binary.BigEndian.PutUint32(syn[12:], 1<<20)
	binary.BigEndian.PutUint16(syn[16:], 0x1234)
	if _, err := c.Write(syn); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 1500)
	n, err := c.Read(reply)
	if err != nil {
		t.Fatalf("no answer to a uTP SYN: %v", err)
	}
	reply = reply[:n]
	if n != 20 || reply[0] != 3<<4|1 {
		t.Fatalf("answer to a uTP SYN: % x, want a 20-byte ST_RESET", reply)
	}
	if id, ack := binary.BigEndian.Uint16(reply[2:]), binary.BigEndian.Uint16(reply[18:]); id != 0xbeef || ack != 0x1234 {
		t.Errorf("reset on connection %#x acknowledging %#x, want the SYN's %#x and %#x", id, ack, 0xbeef, 0x1234)
	}

	ping := []byte("d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe")
	if _, err := c.Write(ping); err != nil {
		t.Fatal(err)
	}
	n, err = c.Read(reply[:cap(reply)])
	if err != nil {
		t.Fatalf("no answer to a ping after the SYN: %v", err)
	}
	if got := reply[:n]; !bytes.Contains(got, []byte("1:y1:r")) || !bytes.Contains(got, []byte("1:t2:aa")) {
		t.Errorf("answer to a ping: %q, want a KRPC response", got)
	}
}
