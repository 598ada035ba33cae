package peerwire

import (
	"fmt"
	"strings"
)

func (t *Torrent) debugState() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var sb strings.Builder
	fmt.Fprintf(&sb, "have %d/%d seeds %d\n", t.nhave, t.npieces, t.seeds)
	for p := range t.peers {
		fmt.Fprintf(&sb, "peer %s choked %v amInterested %v reqs %d hasAll %v nhas %d inBlock %v\n", p.addr, p.choked, p.amInterested, len(p.reqs), p.hasAll, p.nhas, p.inBlock)
	}
	if t.dl != nil {
		fmt.Fprintf(&sb, "active %d unstarted %d\n", len(t.dl.active), t.dl.unstarted)
		for _, pc := range t.dl.active {
			fmt.Fprintf(&sb, " piece %d next %d retry %v done %d/%d solo %v verifying %v state %v asked %v\n", pc.index, pc.next, pc.retry, pc.done, pc.nblocks, pc.solo, pc.verifying, pc.state, pc.asked)
		}
	}
	return sb.String()
}
