package main

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/relay-sh/relay/transfer"
)

// TestDescribeReach: a publish that timed out tells "nobody came" from
// "they came and no connection could be made" from "they connected".
func TestDescribeReach(t *testing.T) {
	seeder := netip.MustParseAddrPort("203.0.113.7:6881")
	for _, c := range []struct {
		name    string
		peers   []transfer.PeerReach
		summary string
		hint    string
	}{
		{"nobody", nil, "the DHT named no peer; no peer connected to this machine", "nobody came"},
		{"no path", []transfer.PeerReach{{Addr: seeder, State: transfer.DialFailed, Err: errors.New("i/o timeout")}},
			"the DHT named 1 peer: 203.0.113.7:6881 dial failed (i/o timeout); no peer connected to this machine", "no path:"},
		{"never tried", []transfer.PeerReach{{Addr: seeder}},
			"203.0.113.7:6881 never tried", "no path:"},
		{"came in", []transfer.PeerReach{{Addr: seeder, Incoming: true, State: transfer.Connected}},
			"1 peer connected to this machine: 203.0.113.7:6881", "peers connected but none held the whole bundle"},
		{"dialled", []transfer.PeerReach{{Addr: seeder, State: transfer.Connected}},
			"203.0.113.7:6881 connected", "peers connected but none held the whole bundle"},
	} {
		summary, hint := describeReach(c.peers, 0)
		if !strings.Contains(summary, c.summary) || !strings.HasPrefix(hint, c.hint) {
			t.Errorf("%s: said %q, hint %q; want %q and a hint starting %q", c.name, summary, hint, c.summary, c.hint)
		}
	}
}
