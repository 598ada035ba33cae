package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/urfave/cli/v2"

	"github.com/relay-sh/relay/dht"
	"github.com/relay-sh/relay/httprelay"
)

// andRelays names the HTTP relays beside the DHT in a note, if any.
func (e *env) andRelays() string {
	switch len(e.relays) {
	case 0:
		return ""
	case 1:
		return " and through 1 HTTP relay"
	}
	return fmt.Sprintf(" and through %d HTTP relays", len(e.relays))
}

// httpFlag is --http ADDR, for the commands that run a DHT node for long.
func httpFlag() cli.Flag {
	return &cli.StringFlag{
		Name:  "http",
		Usage: "also serve pkarr's HTTP relay API (GET/PUT /<key>) from this node's DHT on `ADDR` (host:port), for machines that cannot send UDP",
	}
}

// serveHTTP runs run (nil: wait for the interrupt) and, with --http, a
// pkarr HTTP relay of node's DHT beside it, until both end. A port that
// cannot be listened on fails at once.
func (e *env) serveHTTP(c *cli.Context, node *dht.Node, run func(ctx context.Context) error) error {
	if run == nil {
		run = func(ctx context.Context) error { <-ctx.Done(); return nil }
	}
	addr := c.String("http")
	if addr == "" {
		return run(c.Context)
	}
	srv, err := httprelay.NewServer(httprelay.ServerConfig{DHT: node, Logger: e.logger()})
	if err != nil {
		return err
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--http: %w", err)
	}
	e.note("HTTP relay listening on http://%s; clients use --relays http://%s", ln.Addr(), ln.Addr())
	ctx, cancel := context.WithCancel(c.Context)
	defer cancel()
	var wg sync.WaitGroup
	var serveErr error
	wg.Go(func() {
		serveErr = srv.Serve(ctx, ln)
		cancel()
	})
	err = run(ctx)
	cancel()
	wg.Wait()
	if serveErr != nil && c.Context.Err() == nil {
		return errors.Join(err, fmt.Errorf("http relay: %w", serveErr))
	}
	return err
}
