package dht

import (
	"encoding/hex"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"strconv"

	"github.com/anacrolix/dht/v2/krpc"

	"github.com/relay-sh/relay/internal/atomicfile"
)

// identity is what a node with a nodes file keeps of itself across runs:
// its ID and the address it listened on. A restarted node takes both back,
// so the entries other nodes hold for it still answer: a new ID on a new
// port would leave its old self in their tables, dead, and every lookup
// that reaches it would wait a query timeout.
type identity struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
}

func identityFile(nodesFile string) string { return nodesFile + ".self" }

// loadIdentity returns the ID and address a node kept; ok is false when it
// kept none (or the file is unreadable, which only costs a cold start).
func loadIdentity(nodesFile string) (id krpc.ID, addr netip.AddrPort, ok bool) {
	if nodesFile == "" {
		return id, addr, false
	}
	b, err := os.ReadFile(identityFile(nodesFile))
	if err != nil {
		return id, addr, false
	}
	var s identity
	if json.Unmarshal(b, &s) != nil {
		return id, addr, false
	}
	raw, err := hex.DecodeString(s.ID)
	if err != nil || len(raw) != len(id) {
		return id, addr, false
	}
	copy(id[:], raw)
	addr, err = netip.ParseAddrPort(s.Addr)
	return id, addr, err == nil
}

func saveIdentity(nodesFile string, id krpc.ID, addr netip.AddrPort) error {
	b, err := json.Marshal(identity{ID: hex.EncodeToString(id[:]), Addr: addr.String()})
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(identityFile(nodesFile), b, 0o600)
}

// listenAgain listens on the port a node kept when listen asks for any
// port on the same host; otherwise, or when that port is taken, it listens
// as asked.
func listenAgain(listen string, kept netip.AddrPort, ok bool) (net.PacketConn, error) {
	if ok {
		if host, port, err := net.SplitHostPort(listen); err == nil && port == "0" {
			if c, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(int(kept.Port())))); err == nil {
				return c, nil
			}
		}
	}
	return net.ListenPacket("udp", listen)
}
