package transfer

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/relay-sh/relay/record"
)

func TestFetchOneSeeder(t *testing.T) {
	t.Parallel()
	s, b := seeder(t, map[string]int64{
		"app_linux_amd64":  3 << 20,
		"app_darwin_arm64": 2<<20 + 12345,
		"README.txt":       1000,
		"empty.txt":        0,
	}, Config{})
	l := newClient(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var mu sync.Mutex
	var last Progress
	calls := 0
	res, err := l.Fetch(ctx, FetchRequest{
		Key:     testKey(t),
		Release: b.Release(testTime.Add(time.Hour)),
		Peers:   peersOf(s),
		Progress: func(p Progress) {
			mu.Lock()
			defer mu.Unlock()
			last = p
			calls++
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Files) != 4 {
		t.Fatalf("fetched %d files, want 4", len(res.Files))
	}
	for _, f := range res.Files {
		sameContent(t, filepath.Join(b.Dir, f.Path), res.Path(f))
		st, err := os.Stat(res.Path(f))
		if err != nil {
			t.Fatal(err)
		}
		if got := record.Mode(st.Mode().Perm()); got != f.Mode {
			t.Errorf("%s has mode %s, want %s", f.Path, got, f.Mode)
		}
	}
	if string(res.Bundle.ManifestBytes) != string(b.ManifestBytes) {
		t.Error("manifest differs")
	}
	if last.Stage != StageDone || last.Done != last.Total || last.Total != b.Size {
		t.Errorf("last progress %+v, want done with %d bytes", last, b.Size)
	}
	t.Logf("%d progress calls", calls)
	waitFor(t, 5*time.Second, "the seeder to see one complete peer", func() bool {
		st, _ := s.Stats(b.Infohash)
		return st.CompletePeers == 1
	})
	// The leecher serves it now; a second fetch is immediate.
	if _, err := l.Fetch(ctx, FetchRequest{Key: testKey(t), Release: b.Release(testTime)}); err != nil {
		t.Fatal(err)
	}
}
