package dht_test

// A hostile KRPC client, written here: raw bencode over UDP from chosen
// loopback addresses (Linux routes all of 127.0.0.0/8 to lo, and each
// 127.A.B.C is a host of its own to a node), and the tests that turn it
// on real nodes.

import (
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"
	"github.com/relay-sh/relay/dht"
)

// attacker is one UDP socket of the hostile client.
type attacker struct {
	conn *net.UDPConn
	id   string
}

// listenOn opens a socket on ip (a loopback address), any port.
func listenOn(t testing.TB, ip string) *attacker {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		t.Fatalf("listen on %s: %v", ip, err)
	}
	t.Cleanup(func() { c.Close() })
	id := make([]byte, 20)
	rand.Read(id)
	return &attacker{conn: c, id: string(id)}
}

// hostIP returns the k-th of a test's own addresses, each in a /24 of its
// own: 127.A.B.1 with A from base.
func hostIP(base, k int) string {
	return fmt.Sprintf("127.%d.%d.1", base+k/256, k%256)
}

// query bencodes a KRPC query.
func query(method, tid string, args map[string]any) []byte {
	b, err := bencode.Marshal(map[string]any{"t": tid, "y": "q", "q": method, "a": args})
	if err != nil {
		panic(err)
	}
	return b
}

func (a *attacker) send(to netip.AddrPort, b []byte) {
	a.conn.WriteToUDPAddrPort(b, to)
}

// ask sends one query and waits up to wait for its answer (nil when none
// came).
func (a *attacker) ask(to netip.AddrPort, method string, args map[string]any, wait time.Duration) *krpc.Msg {
	tid := fmt.Sprintf("q%d", time.Now().UnixNano())
	if args == nil {
		args = map[string]any{}
	}
	if _, ok := args["id"]; !ok {
		args["id"] = a.id
	}
	a.send(to, query(method, tid, args))
	deadline := time.Now().Add(wait)
	buf := make([]byte, 65536)
	for {
		a.conn.SetReadDeadline(deadline)
		n, _, err := a.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return nil
		}
		var m krpc.Msg
		if bencode.Unmarshal(buf[:n], &m) == nil && m.T == tid {
			return &m
		}
	}
}

// drain reads and counts what arrives until stop is closed: packets and
// bytes.
func (a *attacker) drain(stop <-chan struct{}) (packets, bytes int) {
	buf := make([]byte, 65536)
	for {
		select {
		case <-stop:
			return
		default:
		}
		a.conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		n, _, err := a.conn.ReadFromUDPAddrPort(buf)
		if err == nil {
			packets++
			bytes += n
		}
	}
}

// heapInUse returns the bytes of live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// startNode starts a bootstrap node, as `relay node` runs, with its
// default limits, on ip.
func startNode(t testing.TB, ip string, configure func(*dht.Config)) *dht.Node {
	t.Helper()
	cfg := dht.Config{Listen: ip + ":0", Bootstrapper: true}
	if configure != nil {
		configure(&cfg)
	}
	n, err := dht.New(ctxFor(t, 10*time.Second), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// answers counts how many of count find_node queries, sent one at a time
// from a, node answered within a second each.
func answers(a *attacker, node netip.AddrPort, count int, gap time.Duration) int {
	got := 0
	for range count {
		target := make([]byte, 20)
		rand.Read(target)
		if m := a.ask(node, "find_node", map[string]any{"target": string(target)}, time.Second); m != nil && m.R != nil {
			got++
		}
		time.Sleep(gap)
	}
	return got
}
