package peerwire

import (
	"context"
	"crypto/sha1"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	pp "github.com/anacrolix/torrent/peer_protocol"
)

// memStorage is a torrent's bytes in memory.
type memStorage []byte

func (m memStorage) ReadAt(p []byte, off int64) (int, error)  { return copy(p, m[off:]), nil }
func (m memStorage) WriteAt(p []byte, off int64) (int, error) { return copy(m[off:], p), nil }

// fuzzTorrent is a small torrent of three pieces, and its info's bytes.
func fuzzTorrent(t testing.TB) (memStorage, []byte) {
	data := make(memStorage, 2*BlockSize+100)
	for i := range data {
		data[i] = byte(i * 7)
	}
	info := metainfo.Info{Name: "f", PieceLength: BlockSize, Length: int64(len(data))}
	for off := 0; off < len(data); off += BlockSize {
		h := sha1.Sum(data[off:min(len(data), off+BlockSize)])
		info.Pieces = append(info.Pieces, h[:]...)
	}
	b, err := bencode.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	return data, b
}

// FuzzServe: whatever a peer that connects sends (its handshake and
// messages), Serve's side of the connection neither panics nor hangs, and
// it ends when the peer hangs up.
func FuzzServe(f *testing.F) {
	data, infoBytes := fuzzTorrent(f)
	ih := sha1.Sum(infoBytes)
	h := handshake{reserved: ourReserved(), infohash: ih}
	hs := string(h.marshal())
	eh, _ := bencode.Marshal(extHandshake{M: map[string]int{"ut_metadata": 3, "x": 4}, Reqq: 10})
	mreq, _ := bencode.Marshal(pp.ExtendedMetadataRequestMsg{Type: pp.RequestMetadataExtensionMsgType, Piece: 0})
	f.Add([]byte(hs))
	f.Add([]byte(hs + string(appendMsg(nil, pp.Interested)) + string(appendMsg(nil, pp.Request, 0, 0, BlockSize))))
	f.Add([]byte(hs + string(appendExtended(nil, 0, eh)) + string(appendExtended(nil, metadataID, mreq))))
	f.Add([]byte(hs + string(appendBitfield(nil, bitfield{0xe0})) + string(appendMsg(nil, pp.Have, 1)) + string(appendMsg(nil, pp.HaveAll))))
	f.Add([]byte(hs + string(appendMsg(nil, pp.Piece, 0, 0)) + strings.Repeat("x", 10)))
	f.Add([]byte(hs + "\xff\xff\xff\xff\x07"))
	f.Fuzz(func(t *testing.T, in []byte) {
		c := New(Config{Extensions: []Extension{{Name: "x", OnMessage: func(*Peer, []byte) {}}}})
		if _, err := c.Add(infoBytes, data, TorrentOptions{Have: func(int) bool { return true }}); err != nil {
			t.Fatal(err)
		}
		server, client := net.Pipe()
		go func() {
			client.Write(in)
			client.Close()
		}()
		go io.Copy(io.Discard, client)
		c.accept(context.Background(), server, func() {})
	})
}

// FuzzParseInfo: ParseInfo takes any bytes without panicking, and an info
// it accepts lays its files out under the torrent's folder.
func FuzzParseInfo(f *testing.F) {
	_, infoBytes := fuzzTorrent(f)
	f.Add(infoBytes)
	multi, _ := bencode.Marshal(metainfo.Info{Name: "d", PieceLength: 4, Pieces: make([]byte, 40),
		Files: []metainfo.FileInfo{{Length: 5, Path: []string{"a", "b"}}, {Length: 3, Path: []string{".."}}}})
	f.Add(multi)
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := ParseInfo(b)
		if err != nil {
			return
		}
		paths, _, err := layout(info)
		if err != nil {
			t.Fatalf("ParseInfo accepted an info whose layout fails: %v", err)
		}
		for _, p := range paths {
			for c := range strings.SplitSeq(p, "/") {
				if c == ".." || c == "" {
					t.Fatalf("path %q leaves the folder", p)
				}
			}
		}
	})
}
