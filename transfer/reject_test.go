package transfer

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"

	"github.com/relay-sh/relay/record"
)

// rejectingSeed is a seed written at the wire level that behaves as
// Transmission 3.00 does with requests: it advertises a request limit
// (reqq) in its extended handshake, queues the requests it gets, and
// rejects (BEP 6) each one that arrives while limit are already queued.
// Its messages go out in the order the requests came, so a reject follows
// the blocks asked for before it. It serves the whole bundle from memory,
// unchokes whoever is interested, and ignores cancels.
type rejectingSeed struct {
	ln    net.Listener
	ih    record.Infohash
	data  []byte
	plen  int64
	reqq  int // advertised
	limit int // queued requests beyond which it rejects

	mu       sync.Mutex
	rejected int
	served   int
	queued   int // blocks asked for and not yet written, on one connection
	wg       sync.WaitGroup
}

// startRejectingSeed serves bundle b (made in dataDir) on host.
func startRejectingSeed(t *testing.T, host, dataDir string, b *Bundle, reqq, limit int) *rejectingSeed {
	t.Helper()
	info, _, err := loadMetainfo(filepath.Join(BundlesDir(dataDir), b.Infohash.String()), b.Infohash)
	if err != nil {
		t.Fatal(err)
	}
	var data []byte
	for _, f := range info.Files {
		d, err := os.ReadFile(filepath.Join(b.Dir, filepath.Join(f.Path...)))
		if err != nil {
			t.Fatal(err)
		}
		data = append(data, d...)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	s := &rejectingSeed{ln: ln, ih: b.Infohash, data: data, plen: info.PieceLength, reqq: reqq, limit: limit}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		ln.Close()
		s.wg.Wait()
	})
	s.wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			stop := context.AfterFunc(ctx, func() { conn.Close() })
			s.wg.Go(func() {
				defer stop()
				s.serve(conn)
			})
		}
	})
	return s
}

func (s *rejectingSeed) counts() (served, rejected int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.served, s.rejected
}

const (
	msgReject   = 16
	msgHaveAll  = 14
	msgExtended = 20
)

// serve runs one connection.
func (s *rejectingSeed) serve(conn net.Conn) {
	defer conn.Close()
	// Handshake: extension protocol (BEP 10) and fast extension (BEP 6).
	reserved := make([]byte, 8)
	reserved[5] |= 0x10
	reserved[7] |= 0x04
	hs := append(append(append(bytes.Clone(protocolName), reserved...), s.ih[:]...), []byte("-TR3000-rejectingsd1")...)
	got := make([]byte, len(hs))
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(conn, got); err != nil || !bytes.Equal(got[28:48], s.ih[:]) {
		return
	}
	if _, err := conn.Write(hs); err != nil {
		return
	}
	conn.SetDeadline(time.Time{})
	ext, _ := bencode.Marshal(map[string]any{"m": map[string]int{}, "reqq": s.reqq, "v": "Transmission-like 3.00"})
	out := make(chan []byte, 1<<16)
	done := make(chan struct{})
	defer close(done)
	// The writer sends what out holds, in order.
	s.wg.Go(func() {
		for {
			select {
			case m := <-out:
				if _, err := conn.Write(m); err != nil {
					conn.Close()
					return
				}
				if len(m) > 13 && m[4] == msgPiece {
					// About 50 MB/s, so that requests queue up here
					// as they do at a seed whose upload is the bound.
					time.Sleep(300 * time.Microsecond)
					s.mu.Lock()
					s.served++
					s.queued--
					s.mu.Unlock()
				}
			case <-done:
				return
			}
		}
	})
	out <- append(wireMessage(msgExtended, append([]byte{0}, ext...)), wireMessage(msgHaveAll, nil)...)
	s.mu.Lock()
	s.queued = 0
	s.mu.Unlock()
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(conn, hdr[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > 1<<20 {
			return
		}
		m := make([]byte, n)
		if _, err := io.ReadFull(conn, m); err != nil {
			return
		}
		switch {
		case n == 1 && m[0] == msgInterested:
			out <- wireMessage(msgUnchoke, nil)
		case n == 13 && m[0] == msgRequest:
			idx, begin, length := binary.BigEndian.Uint32(m[1:]), binary.BigEndian.Uint32(m[5:]), binary.BigEndian.Uint32(m[9:])
			off := int64(idx)*s.plen + int64(begin)
			if length > 1<<17 || off+int64(length) > int64(len(s.data)) {
				return
			}
			s.mu.Lock()
			reject := s.queued >= s.limit
			if reject {
				s.rejected++
			} else {
				s.queued++
			}
			s.mu.Unlock()
			if reject {
				out <- wireMessage(msgReject, nil, idx, begin, length)
				continue
			}
			out <- wireMessage(msgPiece, s.data[off:off+int64(length)], idx, begin)
		}
	}
}

// TestFetchFromRejectingSeed: a fetch whose only source rejects requests,
// at its advertised limit (as Transmission 3.00: reqq=512, a reject once
// 511 are queued) or far below it, completes. Before, the first reject
// that left no request outstanding stopped the fetch at that peer for
// good (Transmission: 16,756,522 of 20,000,554 bytes).
func TestFetchFromRejectingSeed(t *testing.T) {
	for _, tc := range []struct {
		name        string
		reqq, limit int
	}{
		{"transmission", 512, 511},
		{"far below reqq", 512, 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			b := testBundle(t, dir, map[string]int64{"app": 20 << 20})
			seed := startRejectingSeed(t, "127.0.0.5", dir, b, tc.reqq, tc.limit)
			// The fetcher has the torrent's info already (this seed does
			// not serve it): what it must get from the seed is the data.
			_, infoBytes, err := loadMetainfo(filepath.Join(BundlesDir(dir), b.Infohash.String()), b.Infohash)
			if err != nil {
				t.Fatal(err)
			}
			fdir := t.TempDir()
			bdir := filepath.Join(BundlesDir(fdir), b.Infohash.String())
			if err := os.MkdirAll(bdir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := writeMetainfo(bdir, b.Name, infoBytes); err != nil {
				t.Fatal(err)
			}
			l := newClient(t, Config{DataDir: fdir})
			start := time.Now()
			res, err := l.Fetch(fetchCtx(t, 20*time.Second), FetchRequest{
				Key: testKey(t), Release: b.Release(testTime),
				Peers: []netip.AddrPort{netip.MustParseAddrPort(seed.ln.Addr().String())},
			})
			served, rejected := seed.counts()
			if err != nil {
				t.Fatalf("%v (the seed served %d blocks, rejected %d)", err, served, rejected)
			}
			checkFetched(t, b, res)
			t.Logf("fetched %d bytes in %v; the seed served %d blocks and rejected %d", b.Size, time.Since(start).Round(time.Millisecond), served, rejected)
		})
	}
}
