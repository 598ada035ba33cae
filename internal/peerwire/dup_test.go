package peerwire

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestOneConnectionPerPeer: two clients that dial each other at once, 5
// times each, keep one connection between them: of two, both close the
// same one (the one dialled by the higher peer id), so all the dials but
// one end.
func TestOneConnectionPerPeer(t *testing.T) {
	t.Parallel()
	b := makeBundle(t, map[string]int64{"app": 256 << 10}, 64<<10)
	_, ta, aAddr := seeded(t, b, Config{})
	_, tb, bAddr := seeded(t, b, Config{})
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var ended atomic.Int32
	for range 5 {
		wg.Go(func() { ta.Connect(ctx, bAddr); ended.Add(1) })
		wg.Go(func() { tb.Connect(ctx, aAddr); ended.Add(1) })
	}
	for ended.Load() < 9 || ta.Stats().Peers != 1 || tb.Stats().Peers != 1 {
		if ctx.Err() != nil {
			t.Fatalf("%d of 10 dials ended, %d and %d connections between the two peers; want 9, and one", ended.Load(), ta.Stats().Peers, tb.Stats().Peers)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
