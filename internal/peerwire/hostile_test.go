package peerwire

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
	pp "github.com/anacrolix/torrent/peer_protocol"
)

// hostile is a peer written for a test: it listens on 127.0.0.1 and runs
// behave on each connection after answering its handshake for b.
type hostile struct {
	addr  string
	conns atomic.Int32 // connections accepted
	cut   atomic.Int32 // connections the other side closed
}

func hostilePeer(t *testing.T, b *bundle, handshakeOK bool, behave func(h *hostile, conn net.Conn, r *bufio.Reader)) *hostile {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hostile{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, conn)
			mu.Unlock()
			h.conns.Add(1)
			wg.Go(func() {
				defer conn.Close()
				r := bufio.NewReader(conn)
				if !handshakeOK {
					junk := make([]byte, handshakeLen)
					rand.Read(junk)
					conn.Write(junk)
				} else {
					if _, err := readHandshake(r); err != nil {
						return
					}
					ours := handshake{reserved: ourReserved(), infohash: b.info2hash()}
					rand.Read(ours.peerID[:])
					if _, err := conn.Write(ours.marshal()); err != nil {
						return
					}
				}
				behave(h, conn, r)
			})
		}
	})
	return h
}

// drain reads conn until it closes, and counts a close by the other side.
func (h *hostile) drain(conn net.Conn, r *bufio.Reader) {
	if _, err := io.Copy(io.Discard, r); err == nil || !errors.Is(err, net.ErrClosed) {
		h.cut.Add(1)
	}
}

// serveTwisted answers requests from b's files like a seed, passing each
// block through twist first; a nil twist drips each block a byte at a
// time, every 200 ms.
func serveTwisted(t *testing.T, b *bundle, conn net.Conn, r *bufio.Reader, twist func(index uint32, data []byte)) {
	files, err := OpenFiles(b.root, b.info)
	if err != nil {
		t.Error(err)
		return
	}
	defer files.Close()
	npieces := len(b.info.Pieces) / 20
	bf := newBitfield(npieces)
	for i := range npieces {
		bf.set(i)
	}
	conn.Write(appendMsg(appendBitfield(nil, bf), pp.Unchoke))
	for {
		typ, body, err := readMessage(r, npieces)
		if err != nil {
			return
		}
		if typ != pp.Request {
			continue
		}
		index, begin, length := be32(body), be32(body[4:]), be32(body[8:])
		data := make([]byte, length)
		files.ReadAt(data, int64(index)*b.info.PieceLength+int64(begin))
		msg := binary.BigEndian.AppendUint32(nil, 9+length)
		msg = append(msg, byte(pp.Piece))
		msg = binary.BigEndian.AppendUint32(msg, index)
		msg = binary.BigEndian.AppendUint32(msg, begin)
		if twist == nil {
			conn.Write(msg)
			for _, c := range data {
				time.Sleep(200 * time.Millisecond)
				if _, err := conn.Write([]byte{c}); err != nil {
					return
				}
			}
			continue
		}
		twist(index, data)
		if _, err := conn.Write(append(msg, data...)); err != nil {
			return
		}
	}
}

// TestHostilePeers: a download from one honest seed (the torrent
// library's) and peers that send bad pieces, announce a 1 GB message,
// answer the handshake with garbage, drip a block a byte at a time, or
// never unchoke, completes with the seeded bytes; the peer of bad pieces
// is banned, and those of the 1 GB message and the garbage handshake are
// cut off.
func TestHostilePeers(t *testing.T) {
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 4 << 20, "lib": 1<<20 + 5}, 64<<10)
	honest := anacrolixSeeds(t, b)
	bad := hostilePeer(t, b, true, func(h *hostile, conn net.Conn, r *bufio.Reader) {
		serveTwisted(t, b, conn, r, func(_ uint32, data []byte) { data[0] ^= 1 })
	})
	huge := hostilePeer(t, b, true, func(h *hostile, conn net.Conn, r *bufio.Reader) {
		conn.Write(binary.BigEndian.AppendUint32(nil, 1<<30))
		conn.Write([]byte{byte(pp.Piece)})
		h.drain(conn, r)
	})
	garbage := hostilePeer(t, b, false, func(h *hostile, conn net.Conn, r *bufio.Reader) { h.drain(conn, r) })
	drip := hostilePeer(t, b, true, func(h *hostile, conn net.Conn, r *bufio.Reader) {
		serveTwisted(t, b, conn, r, nil)
		h.cut.Add(1)
	})
	never := hostilePeer(t, b, true, func(h *hostile, conn net.Conn, r *bufio.Reader) {
		bf := newBitfield(len(b.info.Pieces) / 20)
		for i := range len(b.info.Pieces) / 20 {
			bf.set(i)
		}
		conn.Write(appendBitfield(nil, bf))
		h.drain(conn, r)
	})

	ctx := ctxFor(t, 3*time.Minute)
	c := New(Config{SnubTimeout: 3 * time.Second, HandshakeTimeout: 5 * time.Second})
	tor, dir := addTorrent(t, c, b, b.infoBytes)
	// The hostile peers first: they are dialled before the honest one.
	more := make(chan string, 1)
	go func() {
		time.Sleep(500 * time.Millisecond)
		more <- honest
	}()
	err := tor.Download(ctx, DownloadOptions{
		Peers:     []string{bad.addr, huge.addr, garbage.addr, drip.addr, never.addr},
		MorePeers: more,
	})
	if err != nil {
		t.Fatal(err, tor.debugState())
	}
	sameFiles(t, b, dir)
	if n := tor.BadPieces(); n == 0 {
		t.Error("no bad piece counted")
	}
	if got := tor.Banned(); !slices.Equal(got, []string{bad.addr}) {
		t.Errorf("banned %v, want the peer of bad pieces %s", got, bad.addr)
	}
	if huge.cut.Load() == 0 {
		t.Error("the peer that announced a 1 GB message was not cut off")
	}
	if garbage.cut.Load() == 0 {
		t.Error("the peer that sent a garbage handshake was not cut off")
	}
}

// TestServeRefusesHostile: Serve cuts off a peer that announces a 1 GB
// message, one that sends a garbage handshake, and one that asks for a
// torrent it does not have, and keeps serving others.
func TestServeRefusesHostile(t *testing.T) {
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 300 << 10}, 64<<10)
	_, _, addr := seeded(t, b, Config{HandshakeTimeout: 5 * time.Second})
	cases := map[string]func(conn net.Conn){
		"1 GB message": func(conn net.Conn) {
			h := handshake{reserved: ourReserved(), infohash: b.info2hash()}
			rand.Read(h.peerID[:])
			conn.Write(h.marshal())
			conn.Write(append(binary.BigEndian.AppendUint32(nil, 1<<30), byte(pp.Bitfield)))
		},
		"garbage handshake": func(conn net.Conn) {
			junk := make([]byte, handshakeLen)
			rand.Read(junk)
			conn.Write(junk)
		},
		"unknown infohash": func(conn net.Conn) {
			h := handshake{reserved: ourReserved()}
			rand.Read(h.infohash[:])
			conn.Write(h.marshal())
		},
	}
	for name, send := range cases {
		t.Run(name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			send(conn)
			// Whatever the server sends, it must close the connection.
			conn.SetReadDeadline(time.Now().Add(time.Minute))
			if _, err := io.Copy(io.Discard, conn); err != nil {
				t.Fatalf("the connection was not closed: %v", err)
			}
		})
	}
	c := New(Config{})
	if _, err := c.FetchInfo(ctxFor(t, time.Minute), b.info2hash(), []string{addr}, nil); err != nil {
		t.Fatalf("an honest peer after them: %v", err)
	}
}

// metadataPeer is a hostile peer's behaviour: it sends before, then an
// extended handshake announcing an info of size bytes, and answers each
// ut_metadata request with its piece of info, until the connection ends
// (counted in h.cut).
func metadataPeer(size int, info, before []byte) func(h *hostile, conn net.Conn, r *bufio.Reader) {
	return func(h *hostile, conn net.Conn, r *bufio.Reader) {
		eh, _ := bencode.Marshal(extHandshake{M: map[string]int{pp.ExtensionNameMetadata: 3}, MetadataSize: size})
		conn.Write(appendExtended(before, 0, eh))
		for {
			typ, body, err := readMessage(r, 0)
			if err != nil {
				h.cut.Add(1)
				return
			}
			if typ != pp.Extended || body[0] != 3 {
				continue
			}
			var m pp.ExtendedMetadataRequestMsg
			bencode.Unmarshal(body[1:], &m)
			d, _ := bencode.Marshal(pp.ExtendedMetadataRequestMsg{Type: pp.DataMetadataExtensionMsgType, Piece: m.Piece, TotalSize: len(info)})
			end := min(len(info), (m.Piece+1)*metadataPiece)
			conn.Write(appendExtended(nil, metadataID, append(d, info[m.Piece*metadataPiece:end]...)))
		}
	}
}

// TestFetchInfoHostile: FetchInfo drops a peer that serves an info that
// does not hash to the infohash, and one that announces an info over
// Config.MaxInfoSize, and takes the info of an honest one.
func TestFetchInfoHostile(t *testing.T) {
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 1 << 20}, 64<<10)
	honest := anacrolixSeeds(t, b)
	forged := slices.Clone(b.infoBytes)
	forged[len(forged)/2] ^= 1
	wrong := hostilePeer(t, b, true, metadataPeer(len(forged), forged, nil))
	huge := hostilePeer(t, b, true, metadataPeer(1<<30, b.infoBytes, nil))
	c := New(Config{MaxInfoSize: 1 << 20})
	ctx := ctxFor(t, time.Minute)
	more := make(chan string, 1)
	go func() {
		// The honest peer once both others were asked.
		for wrong.cut.Load() == 0 || huge.cut.Load() == 0 {
			time.Sleep(20 * time.Millisecond)
		}
		more <- honest
	}()
	info, err := c.FetchInfo(ctx, b.info2hash(), []string{wrong.addr, huge.addr}, more)
	if err != nil {
		t.Fatal(err)
	}
	if string(info) != string(b.infoBytes) {
		t.Fatal("FetchInfo returned other bytes than the seeded info")
	}
	_, err = c.FetchInfo(ctx, b.info2hash(), []string{wrong.addr}, nil)
	if !errors.Is(err, ErrBadInfo) {
		t.Errorf("FetchInfo from the forging peer alone: %v, want ErrBadInfo", err)
	}
}

// TestServeCutsNonReader: a peer that sends requests while choked (each
// rejected, BEP 6) and never reads is cut off once what is queued for it
// passes maxOut, instead of being queued its rejects without bound.
func TestServeCutsNonReader(t *testing.T) {
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 100 << 10}, 64<<10)
	_, _, addr := seeded(t, b, Config{})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	h := handshake{reserved: ourReserved(), infohash: b.info2hash()}
	rand.Read(h.peerID[:])
	var batch []byte
	for range 1000 {
		batch = appendMsg(batch, pp.Request, 0, 0, BlockSize)
	}
	conn.SetWriteDeadline(time.Now().Add(time.Minute))
	if _, err := conn.Write(h.marshal()); err != nil {
		t.Fatal(err)
	}
	// 68 MB of requests: what loopback's socket buffers hold of the
	// rejects, and maxOut, are far less.
	for i := range 4000 {
		if _, err := conn.Write(batch); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("writes blocked after %d requests: the server stopped reading without closing", i*1000)
			}
			return // cut off
		}
	}
	t.Fatal("a peer that never read was sent 4 million rejects' worth of requests without being cut off")
}

// TestBannedNotDialled: a peer that sent a bad piece is banned and not
// dialled again (a peer whose connection ended otherwise is, after a
// second), and the download completes from a peer found later.
func TestBannedNotDialled(t *testing.T) {
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 1 << 20}, 64<<10)
	bad := hostilePeer(t, b, true, func(h *hostile, conn net.Conn, r *bufio.Reader) {
		serveTwisted(t, b, conn, r, func(_ uint32, data []byte) { data[len(data)-1] ^= 0x80 })
	})
	ctx := ctxFor(t, 2*time.Minute)
	tor, dir := addTorrent(t, New(Config{}), b, b.infoBytes)
	more := make(chan string, 1)
	go func() {
		for len(tor.Banned()) == 0 {
			if ctx.Err() != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		// Long enough for a peer that is not banned to be dialled again.
		time.Sleep(3 * time.Second)
		more <- anacrolixSeeds(t, b)
	}()
	if err := tor.Download(ctx, DownloadOptions{Peers: []string{bad.addr}, MorePeers: more}); err != nil {
		t.Fatal(err)
	}
	sameFiles(t, b, dir)
	if got := tor.Banned(); !slices.Equal(got, []string{bad.addr}) {
		t.Errorf("banned %v, want %s", got, bad.addr)
	}
	if n := bad.conns.Load(); n != 1 {
		t.Errorf("the peer of bad pieces was dialled %d times, want once", n)
	}
}
