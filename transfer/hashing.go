package transfer

import (
	"hash/maphash"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/iplist"
	"github.com/anacrolix/torrent/metainfo"

	"github.com/relay-sh/relay/internal/piecehash"
	"github.com/relay-sh/relay/record"
)

// A bundle's pieces are hashed as their chunks are written
// (internal/piecehash), and the torrent library asks the storage for each
// piece's SHA-1 (storage.SelfHashing) instead of reading the piece back to
// hash it. The library then skips its own smart banning, which compares
// what each peer sent with a piece that passed; pieceCheck does it
// instead: it notes which address sent each chunk, and when a piece that
// several addresses sent fails, a fingerprint of each chunk; when the
// piece later passes, an address whose chunk differs from the good one is
// banned. A failed piece that one address sent alone has that address
// banned by the library itself.

// hashBuffer bounds the bytes of the chunks a bundle's hasher keeps
// copies of when they arrive ahead of their turn: a seeder serves the
// requests it holds in no set order (the torrent library's do), so that
// chunks arrive shuffled within what is requested at once.
const hashBuffer = 64 << 20

// freeChunk pools a chunk's buffer the hasher kept.
func freeChunk(b []byte) {
	if cap(b) == chunkSize {
		b = b[:chunkSize]
		chunkBufs.Put(&b)
	}
}

// maxSuspectPieces bounds the failed pieces whose chunks a bundle keeps
// fingerprints of.
const maxSuspectPieces = 64

// pieceCheck hashes a bundle's pieces and files as they are written and
// finds the peers that sent bad chunks.
type pieceCheck struct {
	hasher   *piecehash.Hasher
	read     func(piece int) io.ReaderAt
	pieceLen int64
	total    int64
	ban      func(netip.Addr)
	seed     maphash.Seed

	// libRead counts the bytes the torrent library read of the bundle
	// (to serve them, or to hash a piece without the hasher); fileRead
	// those a fetch read back to finish a file's SHA-256 (fileHash).
	libRead, fileRead atomic.Int64

	mu sync.Mutex
	// from holds, per piece being downloaded, the address that sent each
	// of its chunks.
	from map[int][]netip.Addr
	// suspects holds, per piece that failed with chunks from several
	// addresses, each chunk's fingerprint by address.
	suspects map[int][]sentChunk
}

type sentChunk struct {
	addr  netip.Addr
	chunk int
	sum   uint64
}

// newPieceCheck returns the pieceCheck of a bundle, reading its pieces
// back through read; ban bans an address.
func newPieceCheck(info *metainfo.Info, read func(piece int) io.ReaderAt, ban func(netip.Addr)) (*pieceCheck, error) {
	l := piecehash.Layout{PieceLength: info.PieceLength}
	for i := range info.NumPieces() {
		l.Pieces = append(l.Pieces, [20]byte(info.Pieces[i*20:i*20+20]))
	}
	for _, f := range info.Files {
		l.Files = append(l.Files, f.Length)
	}
	h, err := piecehash.New(l, piecehash.Options{Read: read, Buffer: hashBuffer, Free: freeChunk})
	if err != nil {
		return nil, err
	}
	return &pieceCheck{
		hasher: h, read: read, pieceLen: info.PieceLength, total: info.TotalLength(), ban: ban,
		seed: maphash.MakeSeed(), from: make(map[int][]netip.Addr), suspects: make(map[int][]sentChunk),
	}, nil
}

// received notes that addr sent the chunk at off of piece i, which the
// torrent library is about to write.
func (pc *pieceCheck) received(i int, off int64, addr netip.Addr) {
	length := min(pc.pieceLen, pc.total-int64(i)*pc.pieceLen)
	if i < 0 || off < 0 || off >= length {
		return
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	s := pc.from[i]
	if s == nil {
		s = make([]netip.Addr, (length+chunkSize-1)/chunkSize)
		pc.from[i] = s
	}
	s[off/chunkSize] = addr
}

// checked takes the result of piece i's check: on a failure sent by
// several addresses it keeps each chunk's fingerprint; on a pass it bans
// the addresses that sent a chunk different from the good one before.
func (pc *pieceCheck) checked(i int, ok bool) {
	pc.mu.Lock()
	from := pc.from[i]
	delete(pc.from, i)
	suspects := pc.suspects[i]
	if ok {
		delete(pc.suspects, i)
	}
	pc.mu.Unlock()
	if ok {
		if len(suspects) == 0 {
			return
		}
		sums := pc.chunkSums(i)
		banned := make(map[netip.Addr]bool)
		for _, s := range suspects {
			if s.chunk < len(sums) && s.sum != sums[s.chunk] && !banned[s.addr] {
				banned[s.addr] = true
				pc.ban(s.addr)
			}
		}
		return
	}
	addrs := make(map[netip.Addr]bool)
	for _, a := range from {
		if a.IsValid() {
			addrs[a] = true
		}
	}
	if len(addrs) < 2 {
		return // the library bans a lone sender
	}
	sums := pc.chunkSums(i)
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if _, ok := pc.suspects[i]; !ok && len(pc.suspects) >= maxSuspectPieces {
		return
	}
	s := pc.suspects[i]
	for k, a := range from {
		if a.IsValid() && k < len(sums) && len(s) < 4*len(from) {
			s = append(s, sentChunk{addr: a, chunk: k, sum: sums[k]})
		}
	}
	pc.suspects[i] = s
}

// chunkSums returns the fingerprint of each chunk of piece i as it is on
// disk; a chunk it cannot read has none.
func (pc *pieceCheck) chunkSums(i int) []uint64 {
	length := min(pc.pieceLen, pc.total-int64(i)*pc.pieceLen)
	r := pc.read(i)
	buf := make([]byte, chunkSize)
	var sums []uint64
	for off := int64(0); off < length; off += chunkSize {
		b := buf[:min(chunkSize, length-off)]
		if n, err := r.ReadAt(b, off); n < len(b) && err != nil {
			break
		}
		sums = append(sums, maphash.Bytes(pc.seed, b))
	}
	return sums
}

// onUsefulData notes which address sent a chunk about to be written; it
// runs with the torrent client locked.
func (c *Client) onUsefulData(ev torrent.ReceivedUsefulDataEvent) {
	addr, err := netip.ParseAddrPort(ev.Peer.RemoteAddr.String())
	if err != nil {
		return
	}
	pc := c.store.check(record.Infohash(ev.Peer.Torrent().InfoHash()))
	if pc == nil {
		return
	}
	pc.received(int(ev.Message.Index), int64(ev.Message.Begin), addr.Addr().Unmap())
}

// banIP bans an address: its connections are closed and new ones refused.
func (c *Client) banIP(addr netip.Addr) {
	c.banMu.Lock()
	if c.banned == nil {
		c.banned = make(map[netip.Addr]bool)
	}
	c.banned[addr] = true
	c.banMu.Unlock()
	c.log.Info("banned a peer that sent bad data", "addr", addr)
	var pcs []*torrent.PeerConn
	c.mu.Lock()
	for k, p := range c.peerBits {
		if p.ip == addr {
			pcs = append(pcs, k.pc)
		}
	}
	c.mu.Unlock()
	for _, pc := range pcs {
		c.evict(pc)
	}
}

// Banned returns the addresses banned for sending bad data, by the torrent
// library or by relay.
func (c *Client) Banned() []string {
	if c.w != nil {
		return c.w.bannedIPs()
	}
	out := c.cl.BadPeerIPs()
	c.banMu.Lock()
	defer c.banMu.Unlock()
	for a := range c.banned {
		out = append(out, a.String())
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// blocklist refuses the connections of banned addresses
// (iplist.Ranger, the torrent library's IPBlocklist).
type blocklist struct{ c *Client }

func (b blocklist) Lookup(ip net.IP) (iplist.Range, bool) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return iplist.Range{}, false
	}
	b.c.banMu.Lock()
	defer b.c.banMu.Unlock()
	if b.c.banned[a.Unmap()] {
		return iplist.Range{First: ip, Last: ip, Description: "sent bad data"}, true
	}
	return iplist.Range{}, false
}

func (b blocklist) NumRanges() int {
	b.c.banMu.Lock()
	defer b.c.banMu.Unlock()
	return len(b.c.banned)
}
