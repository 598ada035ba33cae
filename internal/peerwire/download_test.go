package peerwire

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// TestDownloadFromAnacrolix: the info and then every piece of a relay
// bundle of several files come from a seeder running the torrent
// library's client (relay's transfer.Client.Seed), and the files are the
// seeded bytes; OnPiece saw every piece once, verified.
func TestDownloadFromAnacrolix(t *testing.T) {
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 3<<20 + 12345, "lib/x.so": 700 << 10, "README.md": 999}, 64<<10)
	seed := anacrolixSeeds(t, b)
	ctx := ctxFor(t, 2*time.Minute)
	c := New(Config{})
	tor, dir := leecher(t, ctx, c, b, seed)
	var mu sync.Mutex
	var seen []int
	err := tor.Download(ctx, DownloadOptions{Peers: []string{seed}, OnPiece: func(i int, data []byte) error {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, i)
		if int64(len(data)) != tor.pieceSize(i) {
			t.Errorf("piece %d: %d bytes, want %d", i, len(data), tor.pieceSize(i))
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	sameFiles(t, b, dir)
	slices.Sort(seen)
	if len(seen) != tor.npieces || len(slices.Compact(seen)) != tor.npieces {
		t.Errorf("OnPiece saw %d pieces (%d distinct), the torrent has %d", len(seen), len(slices.Compact(seen)), tor.npieces)
	}
	if st := tor.Stats(); st.Pieces != st.Total || st.Bytes != b.Size || st.Downloaded < b.Size || st.Uploaded != 0 {
		t.Errorf("stats %+v, want every piece and %d bytes, downloaded, nothing uploaded", st, b.Size)
	}
}

// TestDownloadWant: a download of some pieces (as relay fetches the
// pieces of relay.json first) fetches those and returns; a second one
// fetches the rest, and only the rest.
func TestDownloadWant(t *testing.T) {
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 1<<20 + 1}, 64<<10)
	seed := anacrolixSeeds(t, b)
	ctx := ctxFor(t, 2*time.Minute)
	tor, dir := addTorrent(t, New(Config{}), b, b.infoBytes)
	first := func(i int) bool { return i < 3 }
	var got []int
	onPiece := func(i int, _ []byte) error { got = append(got, i); return nil }
	if err := tor.Download(ctx, DownloadOptions{Peers: []string{seed}, Want: first, OnPiece: onPiece}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if !slices.Equal(got, []int{0, 1, 2}) {
		t.Fatalf("the first download verified pieces %v, want 0 to 2", got)
	}
	got = nil
	if err := tor.Download(ctx, DownloadOptions{Peers: []string{seed}, OnPiece: onPiece}); err != nil {
		t.Fatal(err)
	}
	sameFiles(t, b, dir)
	if len(got) != tor.npieces-3 || slices.ContainsFunc(got, first) {
		t.Errorf("the second download verified pieces %v, want the %d others", got, tor.npieces-3)
	}
}

// TestInFlightBound: with Config.InFlight below one piece, a download from
// two seeds (the torrent library's and this package's) never holds more
// than two pieces in memory, and completes.
func TestInFlightBound(t *testing.T) {
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 2 << 20}, 64<<10)
	seeds := []string{anacrolixSeeds(t, b)}
	_, _, addr := seeded(t, b, Config{})
	seeds = append(seeds, addr)
	tor, dir := addTorrent(t, New(Config{InFlight: 1}), b, b.infoBytes)
	peak := 0
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			default:
			}
			tor.mu.Lock()
			if tor.dl != nil {
				peak = max(peak, len(tor.dl.active))
			}
			tor.mu.Unlock()
			time.Sleep(time.Millisecond)
		}
	}()
	err := tor.Download(ctxFor(t, 2*time.Minute), DownloadOptions{Peers: seeds})
	close(stop)
	<-sampled
	if err != nil {
		t.Fatal(err)
	}
	sameFiles(t, b, dir)
	if peak > 2 {
		t.Errorf("%d pieces in memory at once, want at most 2", peak)
	}
}

// TestDownloadLeavesSeed: once a download is complete, the seeder it
// fetched from learns it (the haves of its last pieces are written before
// the connection closes) and counts it among the seeds it saw.
func TestDownloadLeavesSeed(t *testing.T) {
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 1<<20 + 7}, 64<<10)
	_, seed, addr := seeded(t, b, Config{})
	ctx := ctxFor(t, time.Minute)
	for range 3 {
		tor, _ := addTorrent(t, New(Config{}), b, b.infoBytes)
		if err := tor.Download(ctx, DownloadOptions{Peers: []string{addr}}); err != nil {
			t.Fatal(err)
		}
	}
	for seed.Stats().Peers > 0 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	if st := seed.Stats(); st.SeedsSeen != 3 {
		t.Errorf("the seeder's stats %+v: want the 3 leechers seen complete", st)
	}
}
