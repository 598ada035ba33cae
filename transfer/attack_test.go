package transfer

import (
	"context"
	"io/fs"
	"os"
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
	// It serves a copy of the honest seeder's bundle folder (which it
	// verifies in full before serving, as it did not write it).
	liarDir := t.TempDir()
	copyTree(t, filepath.Join(BundlesDir(honest.cfg.DataDir), b.Infohash.String()), filepath.Join(BundlesDir(liarDir), b.Infohash.String()))
	liar := newClient(t, Config{DataDir: liarDir, Recheck: -1, Listen: "127.0.0.2:0"})
	lb, err := liar.Seed(context.Background(), b.Infohash)
	if err != nil {
		t.Fatal(err)
	}
	// Every piece of app is corrupted on the liar's disk.
	for off := int64(0); off < 4<<20; off += b.PieceLength {
		modify(t, filepath.Join(lb.Dir, "app"), off+7)
	}
	l := newClient(t, Config{})
	var res *Fetched
	res, err = l.Fetch(fetchCtx(t, 60*time.Second), FetchRequest{Key: testKey(t), Release: b.Release(testTime), Peers: peersOf(liar, honest)})
	if err != nil {
		t.Fatal(err)
	}
	checkFetched(t, b, res)
	st, _ := liar.Stats(b.Infohash)
	t.Logf("the corrupt seeder sent %d bytes; banned: %v", st.Uploaded, l.cl.BadPeerIPs())
}

// copyTree copies the files under src to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}
