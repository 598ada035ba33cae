package transfer

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestWireSeed: a bundle seeded on the wire engine is fetched whole by a
// client of the default engine (the torrent library's) that knows only
// the seeder; the seeder counts what it sent, and stops serving the
// bundle at Drop, leaving its files.
func TestWireSeed(t *testing.T) {
	t.Parallel()
	s, b := seeder(t, map[string]int64{"app": 3<<20 + 5, "lib/x.so": 300 << 10, "README.md": 99}, Config{Engine: EngineWire})
	if !s.Seeding(b.Infohash) {
		t.Fatal("Seeding reports false after Seed")
	}
	fetchSame(t, newClient(t, Config{}), s, b)
	st, ok := s.Stats(b.Infohash)
	if !ok || st.Size != b.Size || st.Have != b.Size || st.Uploaded < b.Size-b.PieceLength {
		t.Errorf("the seeder's stats %+v (%v): want all %d bytes here and most uploaded", st, ok, b.Size)
	}
	s.Drop(b.Infohash)
	if s.Seeding(b.Infohash) {
		t.Error("Seeding reports true after Drop")
	}
	if _, ok := s.Stats(b.Infohash); ok {
		t.Error("the bundle is still in the client after Drop")
	}
	if _, err := os.Stat(filepath.Join(b.Dir, "app")); err != nil {
		t.Errorf("the files are gone after Drop: %v", err)
	}
}

// fetchSame fetches b with l from s alone, within a minute, and checks
// that the files are b's.
func fetchSame(t *testing.T, l, s *Client, b *Bundle) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := l.Fetch(ctx, FetchRequest{Key: testKey(t), Release: b.Release(testTime), Peers: peersOf(s)})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range res.Files {
		sameContent(t, filepath.Join(b.Dir, filepath.FromSlash(f.Path)), res.Path(f))
	}
}
