package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/dht"
	"github.com/relay-sh/relay/internal/untrusted"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/urfave/cli/v2"
)

// open starts a relay client with the global flags. A readOnly client's
// DHT node answers no queries: right for commands that run briefly.
func (e *env) open(c *cli.Context, readOnly bool) (*relay.Client, error) {
	return relay.Open(c.Context, e.config(readOnly))
}

// config is the relay.Config of the global flags.
func (e *env) config(readOnly bool) relay.Config {
	return relay.Config{
		DataDir:   e.dataDir,
		Bootstrap: e.bootstrapList(),
		Listen:    e.listenAddr("0"),
		ReadOnly:  readOnly,
		Reachable: e.reachable,
		Relays:    e.relays,
		Logger:    e.logger(),
		Engine:    e.engine,
	}
}

// bootstrapList is --bootstrap, or nil for the public routers.
func (e *env) bootstrapList() []string {
	if len(e.bootstrap) == 0 {
		return nil
	}
	return e.bootstrap
}

func nodeCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "node",
		Usage: "run a DHT node only: the bootstrap node of a private network",
		Description: "Runs a Mainline DHT node that introduces every node that contacts it to the others,\n" +
			"so a private network forms from its one address: run one `relay node --listen ADDR`,\n" +
			"and give everyone else `--bootstrap ADDR`. Prints its address, then runs until interrupted.",
		Flags: []cli.Flag{&cli.IntFlag{
			Name:  "max-items",
			Usage: "the most BEP 44 records the node holds for others; when full it keeps those closest to its ID",
			Value: dht.DefaultMaxItems,
		}, httpFlag()},
		Action: func(c *cli.Context) error {
			if c.Int("max-items") < 1 {
				return usageError{errors.New("--max-items must be at least 1")}
			}
			listen := e.listenAddr("6881")
			// The node keeps its identity and routing table there: a
			// folder that is not there yet is made, as other commands do.
			if err := os.MkdirAll(e.dataDir, 0o700); err != nil {
				return fmt.Errorf("data folder: %w", err)
			}
			n, err := dht.New(c.Context, dht.Config{
				Listen:       listen,
				Bootstrap:    e.bootstrap, // none: a network of its own
				Bootstrapper: true,
				NodesFile:    filepath.Join(e.dataDir, "dht-nodes-bootstrap"),
				MaxItems:     c.Int("max-items"),
				Logger:       e.logger(),
			})
			if err != nil {
				return interrupted(c, err)
			}
			defer n.Close()
			err = e.result(struct {
				Addr string `json:"addr"`
			}{n.Addr().String()}, func(w io.Writer) {
				fmt.Fprintln(w, n.Addr())
			})
			if err != nil {
				return err
			}
			e.note("DHT node listening on %s; others join with --bootstrap %s", n.Addr(), n.Addr())
			return e.serveHTTP(c, n, nil)
		},
	}
}

func resolveCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "resolve",
		Usage:     "print the verified current release record of a key",
		ArgsUsage: "KEY",
		Flags:     []cli.Flag{channelFlag()},
		Action: func(c *cli.Context) error {
			key, err := parseKeyArg(c.Args().First())
			if err != nil {
				return err
			}
			channel := c.String("channel")
			if err := record.ValidChannel(channel); err != nil {
				return usageError{fmt.Errorf("--channel: %w", err)}
			}
			cl, err := e.open(c, true)
			if err != nil {
				return err
			}
			defer cl.Close()
			res, err := cl.Resolve(c.Context, key, channel)
			if err != nil {
				return err
			}
			out := struct {
				Key     string      `json:"public_key"`
				Seq     int64       `json:"seq"`
				Signed  time.Time   `json:"signed"`
				Stale   bool        `json:"stale"`
				Held    int         `json:"nodes_held"`
				Asked   int         `json:"nodes_answered"`
				Relays  int         `json:"relays_held"`
				Release releaseJSON `json:"release"`
				Body    string      `json:"relay_body"`
				// Root and Signers are set when key delegates its releases
				// (docs/spec/keys.md): the root that vouched, and the
				// release keys whose records count.
				Root    *signer.PublicKey  `json:"root,omitempty"`
				Signers []signer.PublicKey `json:"signers,omitempty"`
			}{key.String(), res.Packet.Seq, res.Packet.Time(), res.Stale, res.Stats.Held, res.Stats.Answered, res.Relays.Held, toReleaseJSON(res.Release), hex.EncodeToString(res.Packet.Body()), nil, res.Signers}
			if res.Delegation != nil || res.Root.Key != key {
				out.Root = &res.Root.Key
			}
			if res.Stale {
				e.note("warning: this record expired %s; a watcher will not install it", res.Release.Expires.Format(time.RFC3339))
			}
			return e.result(out, func(w io.Writer) {
				r := res.Release
				fmt.Fprintf(w, "key       %s\n", key)
				fmt.Fprintf(w, "channel   %s\n", r.Channel)
				fmt.Fprintf(w, "version   %s\n", r.Version)
				fmt.Fprintf(w, "infohash  %s\n", r.Infohash)
				fmt.Fprintf(w, "manifest  %s\n", r.Manifest)
				fmt.Fprintf(w, "size      %s (%d bytes)\n", megabytes(r.Size), r.Size)
				fmt.Fprintf(w, "expires   %s%s\n", r.Expires.Format(time.RFC3339), map[bool]string{true: " (expired)"}[res.Stale])
				for _, ws := range r.WebSeeds {
					fmt.Fprintf(w, "web seed  %s\n", untrusted.Escape(ws))
				}
				if r.Rollout > 0 || r.Critical {
					fmt.Fprintf(w, "rollout   %d%% of machines%s\n", everyone(r.Rollout), map[bool]string{true: ", critical"}[r.Critical])
				}
				if out.Root != nil {
					fmt.Fprintf(w, "root      %s\n", res.Root.Key)
				}
				if d := res.Delegation; d != nil {
					fmt.Fprintf(w, "delegates %d of %s, %d revoked, until %s\n", d.Threshold, count(len(d.Keys), "key"), len(d.Revoked), d.Expires.Format(time.RFC3339))
				}
				for _, k := range res.Signers {
					fmt.Fprintf(w, "signer    %s\n", k)
				}
				fmt.Fprintf(w, "signed    %s (seq %d)\n", res.Packet.Time().Format(time.RFC3339Nano), res.Packet.Seq)
				fmt.Fprintf(w, "held by   %d of %d nodes that answered\n", res.Stats.Held, res.Stats.Answered)
				if res.Relays.Asked > 0 {
					fmt.Fprintf(w, "relays    %d of %d held it\n", res.Relays.Held, res.Relays.Asked)
				}
			})
		},
	}
}

// interrupted turns the error of a daemon interrupted while it starts into
// a clean exit.
func interrupted(c *cli.Context, err error) error {
	if c.Context.Err() != nil {
		return nil
	}
	return err
}
