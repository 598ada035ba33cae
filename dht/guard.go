package dht

import (
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"
	"golang.org/x/time/rate"
)

// Limits of what a node takes from, and sends to, any one host (see
// hosts.go for what a host is). They are general, not tuned to one
// attack: a Mainline client sends a node a handful of queries a lookup.
const (
	// maxPacket is the largest datagram the node reads. The largest KRPC
	// message relay or any client sends is a get answer with a 1000-byte
	// item and both node lists, under 1,800 bytes.
	maxPacket = 4096
	// queryRate and queryBurst bound the queries per second the node
	// takes from one address; netQueryRate and netQueryBurst from one
	// network (a /24 or a /64). Queries beyond are dropped unread, so
	// they cost the node no state and no answer.
	queryRate, queryBurst       = 50, 200
	netQueryRate, netQueryBurst = 100, 400
	// answerBytes and answerBurst bound the bytes a second the node sends
	// one address in answers, netAnswerBytes and netAnswerBurst one
	// network: whoever forges a victim's source address gets at most
	// that much sent to the victim, whatever the answers' size.
	answerBytes, answerBurst       = 32 << 10, 64 << 10
	netAnswerBytes, netAnswerBurst = 64 << 10, 128 << 10
	// maxHosts bounds each map of per-host buckets; beyond, new hosts
	// share one bucket (see buckets). A bucket is about 100 bytes.
	maxHosts = 8192
	// maxQueryWait is the longest a query of the node's own waits for its
	// send limit; one that would wait longer is dropped, as if lost.
	maxQueryWait = time.Second
)

// knownQueries are the KRPC methods the node serves (BEP 5, 44). Every
// other name is answered "method unknown" here, before anacrolix sees it:
// anacrolix counts each name it receives in a process-wide expvar map
// that never shrinks ("received query %q"), so 30,000 queries with
// distinct 1.4 KB names grew a node by 300 MB.
var knownQueries = map[string]bool{
	"ping": true, "find_node": true, "get_peers": true, "announce_peer": true, "get": true, "put": true,
}

// guard is the node's UDP socket as anacrolix's server sees it. Every
// datagram passes it before the server reads or sends it:
//
//   - a uTP SYN is refused with a reset (see utp.go);
//   - a datagram over maxPacket, one that is not a whole KRPC message, a
//     query to a read-only node, a query from a host over its query rate,
//     and a query of a method the node does not serve (answered here)
//     never reach the server;
//   - answers to a host over its byte budget, and answers over the node's
//     own rate, are dropped;
//   - the node's own queries wait for their own rate, which answers do
//     not share (anacrolix's one limiter for both let the pings a
//     bootstrap node sends to those who query it silence its answers).
type guard struct {
	net.PacketConn
	readOnly bool
	queries  *rate.Limiter // the node's own queries
	answers  *rate.Limiter // the node's answers, to everyone

	in, netIn   *buckets // queries received
	out, netOut *buckets // answer bytes sent
}

func newGuard(c net.PacketConn, sendRate float64, readOnly bool) *guard {
	return &guard{
		PacketConn: c,
		readOnly:   readOnly,
		queries:    rate.NewLimiter(rate.Limit(sendRate), max(1, int(sendRate))),
		answers:    rate.NewLimiter(rate.Limit(sendRate), max(1, int(sendRate))),
		in:         newBuckets(queryRate, queryBurst, maxHosts),
		netIn:      newBuckets(netQueryRate, netQueryBurst, maxHosts),
		out:        newBuckets(answerBytes, answerBurst, maxHosts),
		netOut:     newBuckets(netAnswerBytes, netAnswerBurst, maxHosts),
	}
}

// ReadFrom reads the next datagram that the server should see.
func (g *guard) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := g.PacketConn.ReadFrom(b)
		if err != nil {
			return n, addr, err
		}
		if g.admit(b[:n], addr) {
			return n, addr, nil
		}
	}
}

// admit reports whether the server should see datagram p from addr, and
// answers what is answered here.
func (g *guard) admit(p []byte, addr net.Addr) bool {
	ap := udpAddrPort(addr)
	if !ap.IsValid() || ap.Port() == 0 || len(p) > maxPacket {
		return false
	}
	if isUTPSyn(p) {
		// A reset that is lost costs the peer its connect timeout, as
		// before: nothing to do about a failed write.
		if g.allowQuery(ap) {
			g.WriteTo(utpResetFor(p), addr)
		}
		return false
	}
	var m krpc.Msg
	if len(p) < 2 || p[0] != 'd' {
		return false
	}
	if err := bencode.Unmarshal(p, &m); err != nil {
		// Not KRPC, or not all of it: anacrolix would log some such
		// packets whole through the standard logger. (A whole message
		// with bytes after it is read, as anacrolix reads it.)
		var trailing bencode.ErrUnusedTrailingBytes
		if !errors.As(err, &trailing) {
			return false
		}
	}
	switch m.Y {
	case "r", "e":
		// An answer: the server matches it to a query it sent, or drops it.
		return true
	case "q":
	default:
		return false
	}
	if g.readOnly {
		// A read-only node (BEP 43) answers nobody.
		return false
	}
	if !g.allowQuery(ap) {
		return false
	}
	if !knownQueries[m.Q] {
		g.refuse(m.T, addr, krpc.ErrorMethodUnknown)
		return false
	}
	return true
}

// allowQuery takes one query from ap's address's and network's budgets.
func (g *guard) allowQuery(ap netip.AddrPort) bool {
	now := time.Now()
	h, nh := addrHost(ap), netHost(ap)
	if !g.in.allow(h, 1, now) {
		return false
	}
	return nh == h || g.netIn.allow(nh, 1, now)
}

// refuse answers query t with a KRPC error.
func (g *guard) refuse(t string, addr net.Addr, e krpc.Error) {
	b, err := bencode.Marshal(krpc.Msg{T: t, Y: "e", E: &e})
	if err == nil {
		g.WriteTo(b, addr)
	}
}

// WriteTo sends datagram b to addr: at once, later (a query of the
// node's own waiting for its rate) or never (an answer over a budget,
// reported as sent: UDP loses datagrams anyway).
func (g *guard) WriteTo(b []byte, addr net.Addr) (int, error) {
	if isQuery(b) {
		r := g.queries.Reserve()
		if d := r.Delay(); d > maxQueryWait {
			r.Cancel()
			return len(b), nil
		} else if d > 0 {
			time.Sleep(d)
		}
		return g.PacketConn.WriteTo(b, addr)
	}
	ap := udpAddrPort(addr)
	now := time.Now()
	h, nh := addrHost(ap), netHost(ap)
	cost := float64(len(b))
	if !g.out.allow(h, cost, now) || nh != h && !g.netOut.allow(nh, cost, now) || !g.answers.AllowN(now, 1) {
		return len(b), nil
	}
	return g.PacketConn.WriteTo(b, addr)
}

// isQuery reports whether KRPC message b, which this node wrote, is a
// query (y = q) rather than an answer or an error. It decodes the message
// rather than searching its bytes: an answer carries others' bytes (a
// stored item's value) that could hold anything.
func isQuery(b []byte) bool {
	var m struct {
		Y string `bencode:"y"`
	}
	return bencode.Unmarshal(b, &m) == nil && m.Y == "q"
}
