package transfer

import (
	"path/filepath"
	"testing"
	"time"
)

// TestFetchAmongCorruptSeeder: a seeder that serves corrupt pieces (its
// file changed under it and it never rechecks, so it offers the pieces as
// valid) is one of two seeders; the download completes from the honest
// one, and every fetched file is the genuine one.
func TestFetchAmongCorruptSeeder(t *testing.T) {
	t.Parallel()
	// One file: testBundle draws file contents in map order.
	files := map[string]int64{"app": 4 << 20}
	honest, b := seeder(t, files, Config{})
	// The liar has an address of its own: the torrent library bans a
	// peer that sent a bad piece by IP address, and on one shared address
	// it would ban the honest seeder with it (see below).
	liar, lb := seeder(t, files, Config{Recheck: -1, Listen: "127.0.0.2:0"})
	if lb.Infohash != b.Infohash {
		t.Fatal("the two seeders' bundles differ")
	}
	// Every piece of app is corrupted on the liar's disk.
	for off := int64(0); off < 4<<20; off += b.PieceLength {
		modify(t, filepath.Join(lb.Dir, "app"), off+7)
	}
	l := newClient(t, Config{})
	res, err := l.Fetch(fetchCtx(t, 60*time.Second), FetchRequest{Key: testKey(t), Release: b.Release(testTime), Peers: peersOf(liar, honest)})
	if err != nil {
		t.Fatal(err)
	}
	checkFetched(t, b, res)
	st, _ := liar.Stats(b.Infohash)
	t.Logf("the corrupt seeder sent %d bytes; banned: %v", st.Uploaded, l.cl.BadPeerIPs())
}
