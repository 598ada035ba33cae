package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/urfave/cli/v2"
)

// rolloutFlag reads --rollout: a percentage, 1 to 100, with or without
// its %. 100 is every machine, which a record writes as no rollout (0).
func rolloutFlag(c *cli.Context) (int, error) {
	s := strings.TrimSuffix(strings.TrimSpace(c.String("rollout")), "%")
	if s == "" { // an empty RELAY_PUBLISH_ROLLOUT: the default
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 100 {
		return 0, usagef("--rollout %q is not a percentage from 1 to 100", c.String("rollout"))
	}
	if n == 100 {
		n = 0
	}
	return n, nil
}

// rolloutGiven reports whether --rollout was given a value, on the command
// line or in its variable.
func rolloutGiven(c *cli.Context) bool {
	return c.IsSet("rollout") && strings.TrimSpace(c.String("rollout")) != ""
}

// everyone writes a record's rollout for people: 0 is every machine.
func everyone(rollout int) int {
	if rollout <= 0 {
		return 100
	}
	return rollout
}

// rolloutWords says who takes a release, after "published stable 2.0.0":
// nothing for every machine.
func rolloutWords(pct int, critical bool) string {
	s := ""
	if pct > 0 && pct < 100 {
		s = fmt.Sprintf(" to %d%% of machines", pct)
	}
	if critical {
		s += " (critical)"
	}
	return s
}

// pathOnly are publish's flags that describe a new bundle, which a
// rollout change (publish without PATH) has none of.
var pathOnly = []string{"notes", "notes-file", "web-seed", "os", "arch", "force", "recipient", "recipients-file"}

// setRollout is publish without PATH: it signs the channel's current
// release, which must be v, again with a new rollout and criticality.
func (e *env) setRollout(c *cli.Context, key *signer.PrivateKey, v record.Version, channel string, rollout int) error {
	for _, f := range pathOnly {
		if c.IsSet(f) {
			return usagef("--%s needs PATH: without PATH, publish only changes the rollout of the current release", f)
		}
	}
	cl, err := e.open(c, true)
	if err != nil {
		return err
	}
	defer cl.Close()
	e.note("signing %s/%s %s again%s and storing it in the DHT%s", key.PublicKey(), channel, v,
		rolloutWords(everyone(rollout), c.Bool("critical")), e.andRelays())
	ch, err := cl.SetRollout(c.Context, relay.RolloutOptions{
		Key: key, Channel: channel, Version: v,
		Rollout: rollout, Critical: c.Bool("critical"),
		AllowAhead: c.Bool("allow-ahead"),
	})
	if err != nil {
		return withPublishHint(err)
	}
	out := rolloutJSON{
		Key:      key.PublicKey().String(),
		Channel:  channel,
		Version:  v.String(),
		Rollout:  everyone(ch.Release.Rollout),
		Previous: everyone(ch.Previous.Rollout),
		Critical: ch.Release.Critical,
		Infohash: ch.Release.Infohash.String(),
		Expires:  ch.Release.Expires,
		Stored:   ch.Stats.Acked,
		Relays:   ch.RelaysStored,
	}
	if e.json {
		return e.result(out, nil)
	}
	printRollout(e.stdout, out)
	return nil
}

type rolloutJSON struct {
	Key      string    `json:"public_key"`
	Channel  string    `json:"channel"`
	Version  string    `json:"version"`
	Rollout  int       `json:"rollout"`
	Previous int       `json:"previous_rollout"`
	Critical bool      `json:"critical"`
	Infohash string    `json:"infohash"`
	Expires  time.Time `json:"expires"`
	Stored   int       `json:"dht_nodes_stored"`
	Relays   int       `json:"relays_stored,omitempty"`
}

func printRollout(w io.Writer, r rolloutJSON) {
	crit := ""
	if r.Critical {
		crit = " (critical)"
	}
	fmt.Fprintf(w, "rolled out %s %s to %d%% of machines%s (was %d%%)\n", r.Channel, r.Version, r.Rollout, crit, r.Previous)
	fmt.Fprintf(w, "key       %s\n", r.Key)
	fmt.Fprintf(w, "infohash  %s\n", r.Infohash)
	fmt.Fprintf(w, "expires   %s\n", r.Expires.Format(time.RFC3339))
	fmt.Fprintf(w, "stored on %s\n", count(r.Stored, "DHT node"))
	if r.Relays > 0 {
		fmt.Fprintf(w, "stored on %s\n", count(r.Relays, "HTTP relay"))
	}
}
