package relay

import (
	"context"
	"errors"
	"io/fs"

	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/transfer"
)

// DefaultServeRate is the upload cap, in bytes per second, that relay
// watch and package update serve installed releases within unless told
// otherwise: 512 KiB/s, a share of a home uplink that leaves the rest to
// its user.
const DefaultServeRate = 512 << 10

// Serve serves the release this data folder accepted for key's channel
// (empty: "stable"), from its bundle here, to other peers until Close or
// until a later accepted release replaces it: announced in the DHT, within
// Config.UploadRate. It returns the bundle served, or nil when nothing was
// accepted or the bundle is gone from the data folder.
func (c *Client) Serve(ctx context.Context, key signer.PublicKey, channel string) (*transfer.Bundle, error) {
	channel = channelName(channel)
	st, err := c.states.Load(key, channel)
	if err != nil {
		return nil, err
	}
	if st.Infohash.IsZero() {
		return nil, nil
	}
	b, err := c.serveBundle(ctx, st.Infohash)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

// serveBundle serves bundle ih as one of the fleet that holds it
// (transfer.Client.Serve: announced by a few of them, chosen by its
// infohash) unless it is seeded already (then it returns nil, nil).
func (c *Client) serveBundle(ctx context.Context, ih record.Infohash) (*transfer.Bundle, error) {
	tc, err := c.transfer()
	if err != nil {
		return nil, err
	}
	if tc.Seeding(ih) {
		return nil, nil
	}
	return tc.Serve(ctx, ih)
}

// serveAccepted is Serve for Watch: what it serves is said as an event,
// and a failure only logged (the watch goes on, and serves what it
// installs next).
func (c *Client) serveAccepted(ctx context.Context, key signer.PublicKey, channel string, emit func(Event)) {
	b, err := c.Serve(ctx, key, channel)
	switch {
	case err != nil && ctx.Err() == nil:
		c.log.Info("not serving the accepted release", "key", key, "channel", channel, "err", err)
	case b != nil:
		emit(Event{Kind: EventSeeding, Version: b.Manifest.Version, Bundle: b})
	}
}

// serveInstalled serves the release a check of Watch accepted, or with
// noServe stops serving it (the fetch served it while it downloaded).
func (c *Client) serveInstalled(ctx context.Context, res *FetchResult, noServe bool, emit func(Event)) {
	ih := res.Release.Infohash
	if noServe {
		if tc := c.startedTransfer(); tc != nil {
			tc.Drop(ih)
		}
		return
	}
	b, err := c.serveBundle(ctx, ih)
	switch {
	case err != nil && ctx.Err() == nil:
		c.log.Info("not serving the installed release", "version", res.Release.Version, "err", err)
	case b != nil:
		emit(Event{Kind: EventSeeding, Version: b.Manifest.Version, Bundle: b})
	}
}
