package relay

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/relay-sh/relay/internal/backoff"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/transfer"
)

// A seeder follows a key: once the publisher is gone, users still fetch
// each release from the seeder, and the seeder keeps only the last
// releases.
func TestSeedFollows(t *testing.T) {
	n := newTestNet(t)
	ctx := ctxFor(t, 2*time.Minute)
	key := testKey(t, 9)
	pub := n.client(false)
	publish := func(v string) {
		t.Helper()
		p, err := pub.Publish(ctx, PublishOptions{Key: key, Version: record.MustParseVersion(v),
			Sources: []transfer.Source{{Path: releaseDir(t, v)}}})
		if err != nil {
			t.Fatal(err)
		}
		_ = p
	}
	publish("1.0.0")

	seeder := n.client(false)
	events, stop := startSeed(t, ctx, seeder, SeedOptions{Follow: []Follow{{Key: key.PublicKey(), Channel: "stable"}},
		Keep: 1, Interval: 200 * time.Millisecond, Restore: 200 * time.Millisecond})
	waitEvent := func(kind EventKind, version string) {
		t.Helper()
		for {
			select {
			case e := <-events:
				t.Logf("seed event %s %s %v", e.Kind, e.Version, e.Err)
				if e.Kind == kind && (version == "" || e.Version.String() == version) {
					return
				}
			case <-ctx.Done():
				t.Fatalf("no %s event for %s", kind, version)
			}
		}
	}
	waitEvent(EventSeeding, "1.0.0")
	waitEvent(EventRestored, "")
	publish("2.0.0")
	waitEvent(EventSeeding, "2.0.0")
	waitEvent(EventPruned, "1.0.0")

	// The publisher leaves; a new user gets 2.0.0 from the seeder.
	pub.Close()
	user := n.client(true)
	res, err := user.Fetch(ctx, FetchOptions{Key: key.PublicKey(), Out: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Release.Version.String() != "2.0.0" {
		t.Fatalf("fetched %s", res.Release.Version)
	}
	stop()
}

// A seeder given the publisher's key signs its records again before they
// expire, with the same release.
func TestSeedResigns(t *testing.T) {
	n := newTestNet(t)
	ctx := ctxFor(t, time.Minute)
	key := testKey(t, 10)
	pub := n.client(false)
	p, err := pub.Publish(ctx, PublishOptions{Key: key, Version: record.MustParseVersion("1.0.0"), Expires: 4 * time.Second,
		Sources: []transfer.Source{{Path: releaseDir(t, "1.0.0")}}})
	if err != nil {
		t.Fatal(err)
	}
	events, stop := startSeed(t, ctx, pub, SeedOptions{Key: key, Interval: 200 * time.Millisecond})
	defer stop()
	for e := range events {
		if e.Kind == EventResigned {
			if !e.Expires.After(p.Release.Expires) || e.Version.String() != "1.0.0" {
				t.Fatalf("re-signed %s until %s, was until %s", e.Version, e.Expires, p.Release.Expires)
			}
			break
		}
		if e.Kind == EventError {
			t.Fatal(e.Err)
		}
	}
	res, err := n.client(true).Resolve(ctx, key.PublicKey(), "stable")
	if err != nil {
		t.Fatal(err)
	}
	if res.Release.Infohash != p.Release.Infohash || !res.Release.Expires.After(p.Release.Expires) || res.Stale {
		t.Fatalf("after re-signing: %+v", res.Release)
	}
}

// TestSeedChannelsIndependent: a followed release nobody serves (its
// publisher left before anyone fetched it) holds up neither another
// followed channel nor the records' restores, and the seeder still stops
// at once.
func TestSeedChannelsIndependent(t *testing.T) {
	t.Parallel()
	begin := time.Now()
	n := newTestNet(t)
	ctx := ctxFor(t, 2*time.Minute)
	stuck, live := testKey(t, 11), testKey(t, 12)
	// Read-only, as `relay publish` runs: once gone it is in no one's
	// routing table to time out on.
	gone := n.client(true)
	if _, err := gone.Publish(ctx, PublishOptions{Key: stuck, Version: record.MustParseVersion("1.0.0"),
		Sources: []transfer.Source{{Path: releaseDir(t, "1.0.0")}}}); err != nil {
		t.Fatal(err)
	}
	gone.Close()
	pub := n.client(false)
	if _, err := pub.Publish(ctx, PublishOptions{Key: live, Version: record.MustParseVersion("2.0.0"),
		Sources: []transfer.Source{{Path: releaseDir(t, "2.0.0")}}}); err != nil {
		t.Fatal(err)
	}

	t.Logf("%v: published", time.Since(begin).Round(time.Millisecond))
	seeder := n.client(false)
	events, stop := startSeed(t, ctx, seeder, SeedOptions{
		// The stuck channel comes first, and its fetch may wait a minute.
		Follow:   []Follow{{Key: stuck.PublicKey(), Channel: "stable"}, {Key: live.PublicKey(), Channel: "stable"}},
		Interval: 200 * time.Millisecond, Restore: 300 * time.Millisecond, FetchTimeout: time.Minute,
	})
	deadline := time.After(20 * time.Second)
	seeded, restored := false, 0
	for !seeded || restored < 3 {
		select {
		case e := <-events:
			t.Logf("%v: %s %s %s %v", time.Since(begin).Round(time.Millisecond), e.Kind, e.Follow, e.Version, e.Err)
			switch {
			case e.Kind == EventSeeding && e.Follow.Key == live.PublicKey():
				seeded = true
			case e.Kind == EventSeeding && e.Follow.Key == stuck.PublicKey():
				t.Fatal("the release nobody serves was fetched")
			case e.Kind == EventRestored && e.Follow.Key == stuck.PublicKey():
				restored++
			}
		case <-deadline:
			t.Fatalf("within 20 s: the live channel seeded %v, the stuck key restored %d times", seeded, restored)
		}
	}
	stopped := time.Now()
	stop()
	if d := time.Since(stopped); d > 5*time.Second {
		t.Errorf("the seeder took %v to stop", d)
	}
}

// startSeed runs c.Seed with o and returns its events and a function that
// stops it and waits for it to return (also called when the test ends); a
// Seed that returns an error fails the test.
func startSeed(t *testing.T, ctx context.Context, c *Client, o SeedOptions) (<-chan Event, func()) {
	sctx, cancel := context.WithCancel(ctx)
	events := make(chan Event, 256)
	done := make(chan error, 1)
	o.OnEvent = func(e Event) {
		select {
		case events <- e:
		case <-sctx.Done():
		}
	}
	go func() { done <- c.Seed(sctx, o) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(stop)
	return events, stop
}

// TestSeedBeforeFirstRelease: a seeder started before anything is
// published retries soon (its interval here is an hour), so a publisher
// waiting for it to hold the first release waits seconds, not the interval.
func TestSeedBeforeFirstRelease(t *testing.T) {
	t.Parallel()
	n := newTestNet(t)
	ctx := ctxFor(t, 2*time.Minute)
	key := testKey(t, 13)
	seeder := n.client(false)
	events, stop := startSeed(t, ctx, seeder, SeedOptions{Follow: []Follow{{Key: key.PublicKey(), Channel: "stable"}},
		Interval: time.Hour})
	defer stop()
	next := func() Event {
		t.Helper()
		select {
		case e := <-events:
			t.Logf("seed event %s %s %v (retry %s)", e.Kind, e.Version, e.Err, e.Retry)
			return e
		case <-ctx.Done():
			t.Fatal("no seed event")
			return Event{}
		}
	}
	for e := next(); e.Kind != EventError || e.Follow.Channel != "stable"; e = next() {
	}
	// The first failed check is retried after backoff.First, not the hour.
	begin := time.Now()
	pub := n.client(false)
	if _, err := pub.Publish(ctx, PublishOptions{Key: key, Version: record.MustParseVersion("1.0.0"),
		Sources: []transfer.Source{{Path: releaseDir(t, "1.0.0")}}}); err != nil {
		t.Fatal(err)
	}
	for {
		e := next()
		if e.Kind == EventError && e.Retry > 4*backoff.First {
			t.Fatalf("a failed check waits %s", e.Retry)
		}
		if e.Kind == EventSeeding && e.Version.String() == "1.0.0" {
			break
		}
	}
	t.Logf("seeding the first release %s after it was published", time.Since(begin).Round(time.Millisecond))
}
