package relay

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/relay-sh/relay/dht"
	"github.com/relay-sh/relay/httprelay"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
)

// ErrNoPath is returned when a client with relays (Config.Relays) reached
// neither a DHT node nor a relay: where UDP is blocked, a relay is the
// only way to the records.
var ErrNoPath = errors.New("neither a DHT node nor a relay answered")

// relayClient returns the HTTP relay client Config.Relays asks for, or
// nil when there are none.
func relayClient(cfg Config) (*httprelay.Client, error) {
	if len(cfg.Relays) == 0 {
		return nil, nil
	}
	return httprelay.NewClient(httprelay.ClientConfig{URLs: cfg.Relays, Timeout: cfg.RelayTimeout, Transport: cfg.HTTPTransport, Logger: cfg.Logger})
}

// resolvePacket returns key's packet with the highest valid seq that the
// DHT or a relay holds: what every reader of the record calls, so that a
// relay's packet gets the DHT's treatment.
func (c *Client) resolvePacket(ctx context.Context, key signer.PublicKey) (*record.SignedPacket, dht.ResolveStats, error) {
	p, st, _, err := c.resolveBoth(ctx, key)
	return p, st, err
}

// resolveBoth asks the DHT and the relays at once and keeps the packet
// with the highest seq. Both verify what they get against key: a relay
// is trusted no more than a DHT node, and a forged, older or malformed
// answer from either hides nothing the other holds. The caller runs the
// rest of the verification chain on the packet, wherever it came from.
func (c *Client) resolveBoth(ctx context.Context, key signer.PublicKey) (*record.SignedPacket, dht.ResolveStats, httprelay.GetStats, error) {
	p, st, rst, err := c.resolveNetwork(ctx, key)
	if known := c.pushes.get(key); err == nil && known != nil && known.Seq > p.Seq {
		// A peer of the key's swarm told of a newer packet than the DHT
		// and relays gave: it goes through the same checks.
		p = known
	}
	return p, st, rst, err
}

// resolveNetwork is resolveBoth without what peers told of.
func (c *Client) resolveNetwork(ctx context.Context, key signer.PublicKey) (*record.SignedPacket, dht.ResolveStats, httprelay.GetStats, error) {
	if c.relays == nil {
		p, st, err := c.node.Resolve(ctx, key)
		return p, st, httprelay.GetStats{}, err
	}
	var (
		wg         sync.WaitGroup
		dp, rp     *record.SignedPacket
		dst        dht.ResolveStats
		rst        httprelay.GetStats
		derr, rerr error
	)
	wg.Go(func() { dp, dst, derr = c.node.Resolve(ctx, key) })
	wg.Go(func() { rp, rst, rerr = c.relays.Get(ctx, key) })
	wg.Wait()
	best := dp
	if rp != nil && (best == nil || rp.Seq > best.Seq) {
		best = rp
	}
	if best != nil {
		if derr != nil {
			c.log.Info("record from relays only", "key", key, "relays", rst.Held, "dht", derr)
		} else if rerr != nil {
			c.log.Debug("no record from relays", "key", key, "err", rerr)
		}
		return best, dst, rst, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, dst, rst, err
	}
	if errors.Is(derr, dht.ErrNotFound) || errors.Is(rerr, httprelay.ErrNotFound) {
		// Someone answered that there is nothing: as the DHT alone says.
		return nil, dst, rst, fmt.Errorf("%w; DHT: %v; relays: %v", dht.ErrNotFound, derr, rerr)
	}
	return nil, dst, rst, fmt.Errorf("%w: %w; relays: %w", ErrNoPath, derr, rerr)
}

// publishPacket reads key's current packet from the DHT and the relays,
// asks update for the new DNS packet, signs it with a seq above the
// current one and the clock, and stores it through both (dht.Node.Publish
// with no relays). It is an error only when neither stored it.
func (c *Client) publishPacket(ctx context.Context, key *signer.PrivateKey, update func(current *record.SignedPacket) ([]byte, error)) (*record.SignedPacket, dht.PutStats, int, error) {
	if c.relays == nil {
		p, st, err := c.node.Publish(ctx, key, update)
		return p, st, 0, err
	}
	pub := key.PublicKey()
	cur, _, _, err := c.resolveBoth(ctx, pub)
	if err != nil && !errors.Is(err, dht.ErrNotFound) {
		return nil, dht.PutStats{}, 0, fmt.Errorf("publish %s: read current packet: %w", pub, err)
	}
	packet, err := update(cur)
	if err != nil {
		return nil, dht.PutStats{}, 0, fmt.Errorf("publish %s: %w", pub, err)
	}
	var seq int64
	if cur != nil {
		seq = cur.Seq
	}
	p, err := record.Sign(key, record.NextSeq(c.now(), seq), packet)
	if err != nil {
		return nil, dht.PutStats{}, 0, fmt.Errorf("publish %s: %w", pub, err)
	}
	st, relays, err := c.storeBoth(ctx, p)
	if err != nil {
		return p, st, relays, fmt.Errorf("publish %s: %w", pub, err)
	}
	return p, st, relays, nil
}

// storePacket stores an already signed packet again through the DHT and
// the relays.
func (c *Client) storePacket(ctx context.Context, p *record.SignedPacket) (dht.PutStats, error) {
	if c.relays == nil {
		return c.node.Store(ctx, p)
	}
	st, _, err := c.storeBoth(ctx, p)
	return st, err
}

// storeBoth stores p in the DHT and on the relays at once, and returns how
// many relays took it. It is an error only when neither did.
func (c *Client) storeBoth(ctx context.Context, p *record.SignedPacket) (dht.PutStats, int, error) {
	var (
		wg         sync.WaitGroup
		dst        dht.PutStats
		rst        httprelay.PutStats
		derr, rerr error
	)
	wg.Go(func() { dst, derr = c.node.Store(ctx, p) })
	wg.Go(func() { rst, rerr = c.relays.Put(ctx, p) })
	wg.Wait()
	switch {
	case derr != nil && rerr != nil:
		return dst, 0, fmt.Errorf("%w; relays: %w", derr, rerr)
	case derr != nil:
		c.log.Info("record stored through relays only", "key", p.Key, "relays", rst.Stored, "dht", derr)
	case rerr != nil:
		c.log.Warn("no relay stored the record", "key", p.Key, "err", rerr)
	}
	return dst, rst.Stored, nil
}
