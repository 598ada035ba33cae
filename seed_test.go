package relay

import (
	"context"
	"testing"
	"time"

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
	sctx, stop := context.WithCancel(ctx)
	events := make(chan Event, 64)
	done := make(chan error, 1)
	go func() {
		done <- seeder.Seed(sctx, SeedOptions{Follow: []Follow{{Key: key.PublicKey(), Channel: "stable"}},
			Keep: 1, Interval: 200 * time.Millisecond, Restore: 200 * time.Millisecond,
			OnEvent: func(e Event) { events <- e }})
	}()
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
	if err := <-done; err != nil {
		t.Fatal(err)
	}
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
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	events := make(chan Event, 64)
	go pub.Seed(sctx, SeedOptions{Key: key, Interval: 200 * time.Millisecond, OnEvent: func(e Event) { events <- e }})
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
