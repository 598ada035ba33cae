package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/urfave/cli/v2"
)

func seedCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "seed",
		Usage: "serve bundles, follow keys and keep their records alive",
		Description: "Serves every bundle in the data folder; for each --follow KEY[/CHANNEL], fetches, verifies\n" +
			"and serves each new release and keeps the last --keep; stores each followed key's latest\n" +
			"record again every --restore (DHT nodes forget items after about two hours); with --key,\n" +
			"signs the publisher's own records again before they expire. Logs to stderr (JSON with\n" +
			"--json); a status line on a terminal. Stops cleanly on SIGINT or SIGTERM.",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "follow", Usage: "`KEY[/CHANNEL]` to follow (repeatable; channel default stable)", EnvVars: []string{"RELAY_FOLLOW"}},
			&cli.StringFlag{Name: "key", Usage: "the publisher's key `FILE`, to re-sign its records before they expire", EnvVars: []string{"RELAY_KEY"}},
			&cli.IntFlag{Name: "keep", Value: relay.DefaultKeep, Usage: "releases to keep per followed channel, `K`"},
			&cli.StringFlag{Name: "interval", Value: "1m", Usage: "time between checks of followed keys (sooner after a failed one), `DURATION` (at least 30s on the public DHT, 100ms with --bootstrap)"},
			&cli.StringFlag{Name: "restore", Value: "1h", Usage: "time between stores of each followed record, `DURATION`"},
			httpFlag(),
		},
		Action: func(c *cli.Context) error {
			var follow []relay.Follow
			for _, s := range c.StringSlice("follow") {
				f, err := parseFollow(s)
				if err != nil {
					return err
				}
				follow = append(follow, f)
			}
			interval, err := e.intervalFlag(c)
			if err != nil {
				return err
			}
			restore, err := durationFlag(c, "restore")
			if err != nil {
				return err
			}
			if c.Int("keep") < 1 {
				return usagef("--keep must be at least 1")
			}
			var key *signer.PrivateKey
			if c.IsSet("key") {
				if key, err = e.loadKey(c.String("key")); err != nil {
					return err
				}
			}
			cl, err := e.open(c, false)
			if err != nil {
				return interrupted(c, err)
			}
			defer cl.Close()
			log := e.eventLogger()
			if !e.json {
				log.Info("seeding", "data_dir", e.dataDir, "dht", cl.Node().Addr().String(), "follow", len(follow), "resign", key != nil)
			}
			status := newStatusLine(e, cl)
			defer status.stop()
			return e.serveHTTP(c, cl.Node(), func(ctx context.Context) error {
				return cl.Seed(ctx, relay.SeedOptions{
					Follow:   follow,
					Key:      key,
					Keep:     c.Int("keep"),
					Interval: interval,
					Restore:  restore,
					OnEvent: func(ev relay.Event) {
						status.event(ev)
						status.clear()
						if e.json {
							// Machine-readable output goes to stdout, one
							// object a line, as relay watch --json's.
							e.event(ev, "")
						} else {
							logEvent(log, ev)
						}
					},
				})
			})
		},
	}
}

// parseFollow reads KEY[/CHANNEL].
func parseFollow(s string) (relay.Follow, error) {
	k, ch, _ := strings.Cut(s, "/")
	key, err := parseKeyArg(k)
	if err != nil {
		return relay.Follow{}, err
	}
	if ch == "" {
		ch = defaultChannel
	}
	if err := record.ValidChannel(ch); err != nil {
		return relay.Follow{}, usageError{fmt.Errorf("--follow %s: %w", s, err)}
	}
	return relay.Follow{Key: key, Channel: ch}, nil
}

// eventLogger logs a daemon's events on stderr: text, or JSON under
// --json; only warnings and errors under -q.
func (e *env) eventLogger() *slog.Logger {
	level := slog.LevelInfo
	if e.quiet {
		level = slog.LevelWarn
	}
	opts := &slog.HandlerOptions{Level: level}
	if e.json {
		return slog.New(slog.NewJSONHandler(e.stderr, opts))
	}
	return slog.New(slog.NewTextHandler(e.stderr, opts))
}

func logEvent(log *slog.Logger, ev relay.Event) {
	attrs := []any{"event", string(ev.Kind)}
	if !ev.Follow.Key.IsZero() {
		attrs = append(attrs, "key", ev.Follow.Key.String())
		if ev.Follow.Channel != "" {
			attrs = append(attrs, "channel", ev.Follow.Channel)
		}
	}
	if !ev.Version.IsZero() {
		attrs = append(attrs, "version", ev.Version.String())
	}
	if ev.Bundle != nil {
		attrs = append(attrs, "infohash", ev.Bundle.Infohash.String())
	}
	if ev.Stored > 0 {
		attrs = append(attrs, "dht_nodes", ev.Stored)
	}
	if !ev.Expires.IsZero() {
		attrs = append(attrs, "expires", ev.Expires.Format(time.RFC3339))
	}
	switch ev.Kind {
	case relay.EventError:
		if ev.Retry > 0 {
			attrs = append(attrs, "retry", ev.Retry.Round(time.Second).String())
		}
		log.Warn("seed", append(attrs, "err", ev.Err)...)
	case relay.EventRefused, relay.EventStale:
		log.Error("seed", append(attrs, "err", ev.Err)...)
	default:
		log.Info("seed", attrs...)
	}
}

// statusLine draws a seeder's totals on a terminal, every second.
type statusLine struct {
	e       *env
	cl      *relay.Client
	mu      sync.Mutex
	bundles map[record.Infohash]bool
	done    chan struct{}
	wg      sync.WaitGroup
}

func newStatusLine(e *env, cl *relay.Client) *statusLine {
	s := &statusLine{e: e, cl: cl, bundles: map[record.Infohash]bool{}, done: make(chan struct{})}
	if !e.interactive() {
		return s
	}
	s.wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-s.done:
				e.clearLine()
				return
			case <-t.C:
				s.draw()
			}
		}
	})
	return s
}

func (s *statusLine) event(ev relay.Event) {
	if ev.Bundle == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch ev.Kind {
	case relay.EventSeeding:
		s.bundles[ev.Bundle.Infohash] = true
	case relay.EventPruned:
		delete(s.bundles, ev.Bundle.Infohash)
	}
}

// clear erases the status line, before a log line is written.
func (s *statusLine) clear() {
	if s.e.interactive() {
		s.e.clearLine()
	}
}

func (s *statusLine) draw() {
	s.mu.Lock()
	var peers int
	var up int64
	for ih := range s.bundles {
		if st, ok := s.cl.BundleStats(ih); ok {
			peers += st.Peers
			up += st.Uploaded
		}
	}
	n := len(s.bundles)
	s.mu.Unlock()
	s.e.drawLine(fmt.Sprintf("serving %s to %s, %s sent", count(n, "bundle"), count(peers, "peer"), megabytes(up)))
}

func (s *statusLine) stop() {
	close(s.done)
	s.wg.Wait()
}
