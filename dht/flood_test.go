package dht_test

import (
	"crypto/rand"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relay-sh/relay/dht"
	"github.com/relay-sh/relay/record"
)

// A node's memory stays bounded whatever a remote party sends: queries of
// unknown methods (anacrolix counted each distinct name forever: 30,000
// names of 1.4 KB grew a node by 300 MB), distinct transaction IDs,
// distinct source addresses, oversized and malformed datagrams, and every
// query the node serves. Each flood is measured on its own, after a
// collection, in this process, which the node runs in.
func TestFloodsLeaveMemoryBounded(t *testing.T) {
	node := startNode(t, "127.0.0.1", nil)
	to := node.Addr()
	floods := []struct {
		name  string
		bound uint64
		send  func(t *testing.T)
	}{
		{"unknown methods", 4 << 20, func(t *testing.T) {
			a := listenOn(t, "127.31.0.1")
			// Unknown methods are answered "method unknown", as
			// libtorrent expects of a node.
			if m := a.ask(to, "sample_infohashes_x", nil, 2*time.Second); m == nil || m.E == nil || m.E.Code != 204 {
				t.Fatalf("answer to an unknown method: %+v, want KRPC error 204", m)
			}
			name := strings.Repeat("m", 1400)
			for i := range 30000 {
				a.send(to, query(fmt.Sprintf("%s%d-%d", name, time.Now().UnixNano(), i), "t", map[string]any{"id": a.id}))
				pace(i)
			}
		}},
		{"distinct transaction IDs", 4 << 20, func(t *testing.T) {
			a := listenOn(t, "127.32.0.1")
			tid := strings.Repeat("t", 1000)
			for i := range 20000 {
				a.send(to, query("ping", fmt.Sprintf("%s%d", tid, i), map[string]any{"id": a.id}))
				pace(i)
			}
		}},
		{"distinct source addresses", 16 << 20, func(t *testing.T) {
			for k := range 4000 {
				a := listenOn(t, hostIP(40, k))
				a.send(to, query("find_node", "t", map[string]any{"id": a.id, "target": a.id}))
				a.conn.Close()
				pace(k)
			}
		}},
		{"oversized and malformed", 4 << 20, func(t *testing.T) {
			a := listenOn(t, "127.33.0.1")
			big := query("ping", "t", map[string]any{"id": a.id, "pad": strings.Repeat("x", 60000)})
			for i := range 3000 {
				switch i % 4 {
				case 0:
					a.send(to, big)
				case 1:
					a.send(to, []byte("d1:ad2:id20:"+strings.Repeat("\xff", 900)))
				case 2:
					a.send(to, []byte(strings.Repeat("garbage", 200)))
				case 3:
					a.send(to, append(query("ping", "t", map[string]any{"id": a.id}), "trailing"...))
				}
				pace(i)
			}
		}},
		{"every query type", 16 << 20, func(t *testing.T) {
			a := listenOn(t, "127.34.0.1")
			r := a.ask(to, "get_peers", map[string]any{"info_hash": a.id}, 2*time.Second)
			if r == nil || r.R == nil || r.R.Token == nil {
				t.Fatal("no token from get_peers")
			}
			tok := *r.R.Token
			for i := range 20000 {
				h := make([]byte, 20)
				rand.Read(h)
				switch i % 6 {
				case 0:
					a.send(to, query("ping", "t", map[string]any{"id": a.id}))
				case 1:
					a.send(to, query("find_node", "t", map[string]any{"id": a.id, "target": string(h)}))
				case 2:
					a.send(to, query("get_peers", "t", map[string]any{"id": a.id, "info_hash": string(h)}))
				case 3:
					a.send(to, query("announce_peer", "t", map[string]any{"id": a.id, "info_hash": string(h), "port": 1 + i%60000, "token": tok}))
				case 4:
					a.send(to, query("get", "t", map[string]any{"id": a.id, "target": string(h)}))
				case 5:
					a.send(to, query("put", "t", map[string]any{"id": a.id, "token": tok, "v": strings.Repeat("v", 990),
						"k": strings.Repeat("k", 32), "sig": strings.Repeat("s", 64), "seq": i}))
				}
				pace(i)
			}
		}},
	}
	for _, f := range floods {
		t.Run(f.name, func(t *testing.T) {
			before := heapInUse()
			f.send(t)
			time.Sleep(500 * time.Millisecond) // the node reads what is queued
			after := heapInUse()
			grew := int64(after) - int64(before)
			t.Logf("live heap %.1f MB -> %.1f MB (%+.1f MB)", mb(before), mb(after), float64(grew)/(1<<20))
			if grew > int64(f.bound) {
				t.Errorf("the flood grew the live heap by %.1f MB, bound %.1f MB", float64(grew)/(1<<20), mb(f.bound))
			}
			// The node still answers.
			a := listenOn(t, "127.35.0.1")
			if m := a.ask(to, "ping", nil, 2*time.Second); m == nil || m.R == nil {
				t.Error("the node does not answer after the flood")
			}
		})
	}
}

func mb(b uint64) float64 { return float64(b) / (1 << 20) }

// pace lets the node's socket buffer drain now and then, so that the
// flood reaches the node rather than the kernel's drop counter.
func pace(i int) {
	if i%200 == 199 {
		time.Sleep(2 * time.Millisecond)
	}
}

// During a flood of 500 pings a second from one address, a node answers
// at least 90% of another address's queries. (Before, the flood took the
// node's one send limit: 20% were answered.)
func TestFairServiceUnderFlood(t *testing.T) {
	node := startNode(t, "127.0.0.1", nil)
	to := node.Addr()
	flooder, other := listenOn(t, "127.36.0.1"), listenOn(t, "127.37.0.1")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for j := range 5 {
				flooder.send(to, query("ping", fmt.Sprintf("f%d.%d", i, j), map[string]any{"id": flooder.id}))
			}
		}
	})
	var flooded int
	wg.Go(func() { flooded, _ = flooder.drain(stop) })
	time.Sleep(500 * time.Millisecond)
	const asked = 40
	got := answers(other, to, asked, 50*time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d of %d queries answered during the flood; the flooder got %d answers", got, asked, flooded)
	if got < asked*9/10 {
		t.Errorf("%d of %d queries answered during a flood from another address, want at least 90%%", got, asked)
	}
}

// A bootstrap node pings whoever queries it, to introduce them to
// others. 4,200 queries from distinct addresses once queued 4,200 pings
// under the one send limit its answers had too, and it answered nothing
// for 30 to 40 s. Introductions now have a budget of their own: the node
// answers others during such a flood and at once after it.
func TestIntroductionsCannotSilenceNode(t *testing.T) {
	node := startNode(t, "127.0.0.1", nil)
	to := node.Addr()
	other := listenOn(t, "127.38.0.1")
	start := time.Now()
	for k := range 4200 {
		a := listenOn(t, hostIP(60, k))
		a.send(to, query("find_node", "t", map[string]any{"id": a.id, "target": a.id}))
		pace(k)
	}
	t.Logf("4,200 queries from distinct addresses sent in %v", time.Since(start).Round(time.Millisecond))
	time.Sleep(500 * time.Millisecond)
	const asked = 20
	got := answers(other, to, asked, 50*time.Millisecond)
	t.Logf("%d of %d queries answered in the %v after the flood", got, asked, time.Since(start).Round(time.Millisecond))
	if got < asked*9/10 {
		t.Errorf("%d of %d queries answered after a flood of queries from distinct addresses, want at least 90%%", got, asked)
	}
}

// A node is no amplifier: whoever sends it queries in a victim's name
// (here, from the victim's address) gets at most the node's per-address
// budget sent to the victim, however large the answers. A get of a
// stored record is answered with 4.5 times its bytes; the victim here
// asks for one as fast as it can for 3 s.
func TestAnswersBoundedPerAddress(t *testing.T) {
	node := startNode(t, "127.0.0.1", nil)
	ctx := ctxFor(t, 20*time.Second)
	pub, err := dht.New(ctx, dht.Config{Listen: "127.0.0.1:0", Bootstrap: []string{node.Addr().String()}, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	key := newKey(t)
	// Three web seeds make the record as large as a real one with
	// several (about 900 bytes).
	r := release(t, "stable", "1.0.0")
	for i := range 3 {
		r.WebSeeds = append(r.WebSeeds, fmt.Sprintf("https://mirror%d.example.org/%s", i, strings.Repeat("releases/", 14)))
	}
	if _, _, err := pub.Publish(ctx, key, setRelease(key.PublicKey(), r)); err != nil {
		t.Fatal(err)
	}
	target := record.Target(key.PublicKey())
	to := node.Addr()
	victim := listenOn(t, "127.39.0.1")
	stop := make(chan struct{})
	var (
		wg             sync.WaitGroup
		packets, bytes int
		sent           int
	)
	wg.Go(func() { packets, bytes = victim.drain(stop) })
	const flood = 3 * time.Second
	start := time.Now()
	for i := 0; time.Since(start) < flood; i++ {
		q := query("get", strconv.Itoa(i), map[string]any{"id": victim.id, "target": string(target[:]), "want": []string{"n4", "n6"}})
		victim.send(to, q)
		sent += len(q)
		if i%10 == 9 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	took := time.Since(start).Seconds()
	t.Logf("sent %d bytes of queries in %.1f s; got %d answers, %d bytes (%.0f bytes/s)", sent, took, packets, bytes, float64(bytes)/took)
	// The budget: 64 KiB at once, 32 KiB a second after.
	if limit := 64<<10 + int(took*(32<<10)); bytes > limit {
		t.Errorf("%d bytes sent to one address in %.1f s, want at most %d", bytes, took, limit)
	}
}

// A read-only node (BEP 43) answers nobody, not even "method unknown".
func TestReadOnlyNodeAnswersNobody(t *testing.T) {
	b := startNode(t, "127.0.0.1", nil)
	ro := startNode(t, "127.0.0.1", func(c *dht.Config) {
		c.Bootstrapper, c.ReadOnly, c.Bootstrap = false, true, []string{b.Addr().String()}
	})
	a := listenOn(t, "127.40.0.1")
	for _, method := range []string{"ping", "find_node", "no_such_method"} {
		if m := a.ask(ro.Addr(), method, map[string]any{"target": a.id}, 500*time.Millisecond); m != nil {
			t.Errorf("a read-only node answered %s: %+v", method, m)
		}
	}
}
