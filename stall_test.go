package relay

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/transfer"
)

// TestFetchNeverWaitsForever: a release whose bundle nobody serves ends
// the download with ErrStalled after StallTimeout, saying what it waited
// for; and a newer release published while it waits takes its place.
func TestFetchNeverWaitsForever(t *testing.T) {
	n := newTestNet(t)
	ctx := ctxFor(t, 2*time.Minute)
	key := testKey(t, 9)
	pub := n.client(false)
	unserved := func(v string) {
		t.Helper()
		r := record.Release{Channel: "stable", Version: record.MustParseVersion(v), Infohash: record.Infohash{0xab, 0xcd},
			Manifest: record.SHA256([]byte(v)), Size: 4242, Expires: time.Now().Add(time.Hour).UTC().Truncate(time.Second)}
		if _, _, err := pub.Node().Publish(ctx, key, record.ReleaseUpdate(key.PublicKey(), r)); err != nil {
			t.Fatal(err)
		}
	}
	unserved("2.0.0")

	user := n.client(true)
	var mu sync.Mutex
	var waited []Waiting
	o := FetchOptions{Key: key.PublicKey(), StallTimeout: 2 * time.Second, OnWaiting: func(w Waiting) {
		mu.Lock()
		waited = append(waited, w)
		mu.Unlock()
	}}
	start := time.Now()
	_, err := user.Fetch(ctx, o)
	if !errors.Is(err, ErrStalled) {
		t.Fatalf("fetch of a release nobody serves: %v, want ErrStalled", err)
	}
	t.Logf("stalled after %s: %v", time.Since(start).Round(time.Millisecond), err)
	mu.Lock()
	if len(waited) != 1 || waited[0].Release.Version.String() != "2.0.0" || waited[0].Stage != transfer.StageInfo || waited[0].Known != 0 {
		t.Errorf("waiting reports %+v, want one for 2.0.0 at the info stage with no peer", waited)
	}
	mu.Unlock()

	// Waiting on 2.0.0 with no stall timeout in sight, the fetch takes
	// 3.0.0 once it is published.
	o.StallTimeout, o.Recheck = time.Hour, 200*time.Millisecond
	found := make(chan record.Version, 4)
	o.OnFound = func(r record.Release, _ record.Version) { found <- r.Version }
	done := make(chan error, 1)
	var res *FetchResult
	go func() {
		var err error
		res, err = user.Fetch(ctx, o)
		done <- err
	}()
	if v := <-found; v.String() != "2.0.0" {
		t.Fatalf("found %s first", v)
	}
	if _, err := pub.Publish(ctx, PublishOptions{Key: key, Version: record.MustParseVersion("3.0.0"),
		Sources: []transfer.Source{{Path: releaseDir(t, "3.0.0")}}}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("fetch after 3.0.0 was published: %v", err)
	}
	if res.Release.Version.String() != "3.0.0" {
		t.Fatalf("fetched %s, want 3.0.0", res.Release.Version)
	}
}
