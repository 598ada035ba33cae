package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/dht/localnet"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/transfer"
	"github.com/urfave/cli/v2"
)

func demoCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "run the whole publish, seed, watch loop on a private network on this machine",
		Description: "Starts a private DHT of real nodes on 127.0.0.1, makes a throwaway key, publishes a\n" +
			"release, starts a seeder and a watcher, publishes a second release and shows the watcher\n" +
			"verify and install it, then shows a replayed old record refused. Everything lives in a\n" +
			"temporary folder that is removed at the end. Nothing leaves this machine.",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "nodes", Value: 16, Usage: "DHT nodes in the private network, `N`"},
			&cli.BoolFlag{Name: "keep", Usage: "keep the temporary folder and print its path"},
		},
		Action: func(c *cli.Context) error {
			ctx, cancel := context.WithTimeout(c.Context, 2*time.Minute)
			defer cancel()
			d := &demo{e: e, start: time.Now()}
			err := d.run(ctx, c.Int("nodes"), c.Bool("keep"))
			if err != nil && ctx.Err() != nil && c.Context.Err() == nil {
				return fmt.Errorf("the demo took over two minutes: %w", err)
			}
			return err
		},
	}
}

type demo struct {
	e     *env
	start time.Time
}

// say narrates a step: a line of text, or a JSON object under --json.
func (d *demo) say(step, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if d.e.json {
		d.e.result(struct {
			At   string `json:"at"`
			Step string `json:"step"`
			Msg  string `json:"message"`
		}{time.Since(d.start).Round(time.Millisecond).String(), step, msg}, nil)
		return
	}
	fmt.Fprintf(d.e.stdout, "%6.2fs  %-9s %s\n", time.Since(d.start).Seconds(), step, msg)
}

func (d *demo) run(ctx context.Context, nodes int, keep bool) error {
	tmp, err := os.MkdirTemp("", "relay-demo-")
	if err != nil {
		return err
	}
	if keep {
		defer d.say("kept", "everything is in %s", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}

	d.say("network", "starting a private Mainline DHT: a bootstrap node and %d nodes on 127.0.0.1", nodes)
	net, err := localnet.Start(ctx, localnet.Config{Nodes: nodes})
	if err != nil {
		return err
	}
	defer net.Close()
	bootstrap := []string{net.Bootstrap.Addr().String()}
	d.say("network", "%d nodes joined through %s; every routing table is full", len(net.Nodes)+1, bootstrap[0])

	key, err := signer.Generate(nil)
	if err != nil {
		return err
	}
	pub := key.PublicKey()
	d.say("key", "made a throwaway provider key; users trust only its public half:")
	d.say("key", "%s", pub)

	open := func(name string, readOnly bool) (*relay.Client, error) {
		return relay.Open(ctx, relay.Config{
			DataDir:   filepath.Join(tmp, name),
			Bootstrap: bootstrap,
			Listen:    "127.0.0.1:0",
			ReadOnly:  readOnly,
		})
	}
	seeder, err := open("seeder", false)
	if err != nil {
		return err
	}
	defer seeder.Close()
	watcher, err := open("watcher", false)
	if err != nil {
		return err
	}
	defer watcher.Close()

	// A seeder follows the key from the start.
	bg, stopBG := context.WithCancel(ctx)
	defer stopBG()
	seeded := make(chan relay.Event, 16)
	installed := make(chan relay.Event, 16)
	done := make(chan error, 2)
	go func() {
		done <- seeder.Seed(bg, relay.SeedOptions{
			Follow:   []relay.Follow{{Key: pub, Channel: "stable"}},
			Interval: 500 * time.Millisecond,
			OnEvent: func(ev relay.Event) {
				if ev.Kind == relay.EventSeeding {
					seeded <- ev
				}
			},
		})
	}()
	d.say("seeder", "following %s/stable: fetches, verifies and serves each release, keeps the record alive", short(pub))

	// Release 1.0.0: the build machine publishes, waits until the seeder
	// holds the bundle, and leaves.
	p1, err := d.publish(ctx, key, tmp, "1.0.0", open, seeded)
	if err != nil {
		return err
	}

	// A watcher installs each release.
	out := filepath.Join(tmp, "installed")
	go func() {
		done <- watcher.Watch(bg, relay.WatchOptions{
			FetchOptions: relay.FetchOptions{Key: pub, Channel: "stable", Out: out},
			Interval:     500 * time.Millisecond,
			OnEvent: func(ev relay.Event) {
				switch ev.Kind {
				case relay.EventInstalled, relay.EventRefused, relay.EventStale:
					installed <- ev
				}
			},
		})
	}()
	d.say("watcher", "following %s/stable every 0.5s, installing into %s", short(pub), out)
	if err := d.await(ctx, installed, "1.0.0", d.installedSay); err != nil {
		return err
	}
	d.run1(out)

	// Release 2.0.0, the same way.
	if _, err := d.publish(ctx, key, tmp, "2.0.0", open, seeded); err != nil {
		return err
	}
	if err := d.await(ctx, installed, "2.0.0", d.installedSay); err != nil {
		return err
	}
	d.run1(out)

	// An attacker replays the old, validly signed record.
	st, err := watcher.State(pub, "stable")
	if err != nil {
		return err
	}
	_, err = record.Check(p1.Packet, pub, "stable", st.Accepted, record.Policy{Now: time.Now()})
	if !errors.Is(err, record.ErrReplay) {
		return fmt.Errorf("the replayed record was not refused as a replay: %v", err)
	}
	if _, serr := seeder.Node().Store(ctx, p1.Packet); serr != nil {
		d.say("attack", "someone stores the old, validly signed 1.0.0 record again: DHT nodes keep the newer one (%v)", serr)
	}
	d.say("attack", "and a watcher handed it anyway refuses it: %v", err)

	stopBG()
	for range 2 {
		if err := <-done; err != nil {
			return err
		}
	}
	d.say("done", "published 2 releases, served by a seeder, installed by a watcher; no server anywhere")
	return nil
}

func (d *demo) installedSay(ev relay.Event) {
	if ev.Kind != relay.EventInstalled {
		d.say("watcher", "%s: %v", ev.Kind, ev.Err)
		return
	}
	r := ev.Result.Release
	d.say("watcher", "found %s (was %s) and checked: signature by the trusted key, seq not older, version not lower, not expired",
		r.Version, orNoneVersion(ev.Result.Previous))
	d.say("watcher", "fetched the bundle from peers found in the DHT: relay.json matches the record's sha-256 and size, %s for %s/%s match relay.json",
		count(len(ev.Result.Files), "file"), runtime.GOOS, runtime.GOARCH)
	var names []string
	for _, p := range ev.Result.Placed {
		names = append(names, filepath.Base(p))
	}
	d.say("watcher", "installed atomically: %s", strings.Join(names, ", "))
}

// run1 runs the installed program, where this system can.
func (d *demo) run1(out string) {
	if runtime.GOOS == "windows" {
		return
	}
	b, err := exec.Command("/bin/sh", filepath.Join(out, "hello_"+runtime.GOOS+"_"+runtime.GOARCH)).Output()
	if err == nil {
		d.say("run", "the installed program says: %s", strings.TrimSpace(string(b)))
	}
}

func (d *demo) await(ctx context.Context, ch <-chan relay.Event, version string, show func(relay.Event)) error {
	for {
		select {
		case ev := <-ch:
			if ev.Kind != relay.EventSeeding && ev.Kind != relay.EventInstalled {
				show(ev)
				return fmt.Errorf("%s: %w", ev.Kind, ev.Err)
			}
			if ev.Version.String() == version {
				show(ev)
				return nil
			}
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", version, ctx.Err())
		}
	}
}

// publish is a build machine's run: it opens a client, publishes version,
// seeds until the seeder holds the whole bundle, and leaves.
func (d *demo) publish(ctx context.Context, key *signer.PrivateKey, tmp, version string,
	open func(string, bool) (*relay.Client, error), seeded <-chan relay.Event) (*relay.Published, error) {
	dir := filepath.Join(tmp, "build-"+version)
	files := map[string]string{
		"hello_" + runtime.GOOS + "_" + runtime.GOARCH: "#!/bin/sh\necho 'hello from " + version + "'\n",
		"hello_windows_arm64.exe":                      "not really a program: another platform's file, which watchers here skip\n",
		"NOTES.txt":                                    "release " + version + "\n",
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o755); err != nil {
			return nil, err
		}
	}
	c, err := open("publisher-"+version, true)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	p, err := c.Publish(ctx, relay.PublishOptions{
		Key:     key,
		Version: record.MustParseVersion(version),
		Notes:   "demo release " + version,
		Sources: []transfer.Source{{Path: dir}},
		Expires: time.Hour,
	})
	if err != nil {
		return nil, err
	}
	d.say("publish", "%s: bundled %s + relay.json (%s), infohash %s", version, count(len(files), "file"), megabytes(p.Release.Size), short(p.Release.Infohash))
	d.say("publish", "%s: signed the record (seq %d) and stored it on %s", version, p.Packet.Seq, count(p.Stats.Acked, "DHT node"))
	if err := d.await(ctx, seeded, version, func(ev relay.Event) {
		d.say("seeder", "fetched and verified %s; serving bundle %s", ev.Version, short(ev.Bundle.Infohash))
	}); err != nil {
		return nil, err
	}
	if _, err := c.WaitForPeers(ctx, p.Release.Infohash, 1); err != nil {
		return nil, err
	}
	d.say("publish", "%s: the seeder holds the whole bundle; the build machine leaves", version)
	return p, nil
}

func short(s fmt.Stringer) string {
	t := s.String()
	if len(t) > 12 {
		return t[:12] + "…"
	}
	return t
}

func orNoneVersion(v record.Version) string {
	if v.IsZero() {
		return "nothing"
	}
	return v.String()
}
