package relay

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/transfer"
)

// pushes holds the newest packet of each key that passed the verification
// chain here, whether a DHT lookup or a peer (relay_record,
// docs/spec/relay-record.md) brought it, and wakes the watches of its key.
type pushes struct {
	mu      sync.Mutex
	newest  map[signer.PublicKey]*record.SignedPacket
	follows map[Follow]int // the channels watched now, counted
	changed chan struct{}  // closed, and replaced, when newest changes
	// gen counts the changes of newest; at is the gen of each key's
	// last change.
	gen uint64
	at  map[signer.PublicKey]uint64
}

func (ps *pushes) init() {
	ps.newest = make(map[signer.PublicKey]*record.SignedPacket)
	ps.follows = make(map[Follow]int)
	ps.changed = make(chan struct{})
	ps.at = make(map[signer.PublicKey]uint64)
}

// follow notes a channel watched until the returned function is called.
func (ps *pushes) follow(f Follow) (done func()) {
	ps.mu.Lock()
	ps.follows[f]++
	ps.mu.Unlock()
	return func() {
		ps.mu.Lock()
		if ps.follows[f]--; ps.follows[f] <= 0 {
			delete(ps.follows, f)
		}
		ps.mu.Unlock()
	}
}

// channels returns the channels of key watched now.
func (ps *pushes) channels(key signer.PublicKey) []string {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var chs []string
	for f := range ps.follows {
		if f.Key == key {
			chs = append(chs, f.Channel)
		}
	}
	return chs
}

// offer makes p the newest packet of its key if it is newer, and reports
// whether it was.
func (ps *pushes) offer(p *record.SignedPacket) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if cur := ps.newest[p.Key]; cur != nil && cur.Seq >= p.Seq {
		return false
	}
	ps.newest[p.Key] = p
	ps.gen++
	ps.at[p.Key] = ps.gen
	close(ps.changed)
	ps.changed = make(chan struct{})
	return true
}

// get returns the newest packet of key, or nil.
func (ps *pushes) get(key signer.PublicKey) *record.SignedPacket {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.newest[key]
}

// mark returns what has changed so far, for wait.
func (ps *pushes) mark() uint64 {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.gen
}

// wait sleeps until the deadline, or until the newest packet of one of
// keys changed after mark, and then reports pushed. ok is false when ctx
// ended.
func (ps *pushes) wait(ctx context.Context, deadline time.Time, keys []signer.PublicKey, mark uint64) (pushed, ok bool) {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for {
		ps.mu.Lock()
		changed := ps.changed
		for _, k := range keys {
			pushed = pushed || ps.at[k] > mark
		}
		ps.mu.Unlock()
		if pushed {
			return true, true
		}
		select {
		case <-ctx.Done():
			return false, false
		case <-t.C:
			return false, true
		case <-changed:
		}
	}
}

// PushBackoff is how many times further apart the DHT checks of a Watch
// or an update.Run are while the client has a peer that takes relay_record
// messages in a swarm of the key's bundles: that peer passes on a newer
// packet within seconds, so the DHT is the fallback, not the news. With
// more such peers than PushBackoff-1, each of which checks the DHT too
// and tells of what it finds, a check is put off one interval more for
// each, up to MaxPushBackoff intervals in all: a client and its P peers
// then ask the DHT together about as often as one of them polling alone,
// so news reaches them as soon, and each asks 1/(P+1) as often. Seeders
// keep their interval: they find releases for the swarm.
const (
	PushBackoff    = 12
	MaxPushBackoff = 24
)

// pushBackoff is how many intervals a check is put off in all with peers
// relay_record peers of the key.
func pushBackoff(peers int) int {
	if peers <= 0 {
		return 1
	}
	return min(max(PushBackoff, peers+1), MaxPushBackoff)
}

// PushWaiter follows what peers of a key's swarm tell of (relay_record,
// docs/spec/relay-record.md) for one channel, and times the channel's DHT
// checks: while it is open, the client takes the packets of the key that
// pass the record checks for the channel, and Wait returns when one
// arrives or a DHT check is due. Watch and Seed use one; a program that
// checks on its own (update.Run) opens its own.
type PushWaiter struct {
	c    *Client
	key  signer.PublicKey
	mark uint64
	stop func()
	// next is when the DHT is checked next; step how far it is put off
	// at a time while a peer would tell of news, skips how often it was.
	next  time.Time
	step  time.Duration
	skips int
}

// AwaitPushes returns a PushWaiter for key's channel ("" is "stable").
// Close it when done.
func (c *Client) AwaitPushes(key signer.PublicKey, channel string) *PushWaiter {
	channel = channelName(channel)
	w := &PushWaiter{c: c, key: key, stop: c.pushes.follow(Follow{Key: key, Channel: channel})}
	w.Mark()
	return w
}

// Mark notes the packets held now: Wait returns for what arrives after.
// Call it before each check.
func (w *PushWaiter) Mark() { w.mark = w.c.pushes.mark() }

// Schedule sets the next DHT check wait from now. With stretch (the check
// got an answer, and wait is the jittered interval) the check is put off
// by wait at a time, up to PushBackoff times in all (more with many peers:
// MaxPushBackoff), whenever it comes due while the client has a
// relay_record peer in the key's swarm.
func (w *PushWaiter) Schedule(wait time.Duration, stretch bool) {
	w.next, w.step, w.skips = time.Now().Add(wait), 0, 0
	if stretch {
		w.step = wait
	}
}

// Next returns when the DHT is checked next, as far as known now.
func (w *PushWaiter) Next() time.Time { return w.next }

// Wait waits until the DHT check is due (pushed is false), or until a peer
// tells of a packet of the key, or of a key its releases depend on (a
// root's or release key's: docs/spec/keys.md), that passed the record
// checks after the last Mark (pushed is true: check with
// FetchOptions.Pushed, which asks no DHT node). It returns ctx's error
// when ctx ends first.
func (w *PushWaiter) Wait(ctx context.Context) (pushed bool, err error) {
	keys := append([]signer.PublicKey{w.key}, w.c.chainKeys(w.key)...)
	for {
		pushed, ok := w.c.pushes.wait(ctx, w.next, keys, w.mark)
		switch {
		case !ok:
			return false, ctx.Err()
		case pushed:
			return true, nil
		case w.step > 0 && w.skips < pushBackoff(w.c.PushPeers(w.key))-1:
			w.skips++
			w.next = w.next.Add(w.step)
		default:
			return false, nil
		}
	}
}

// Close stops following the channel.
func (w *PushWaiter) Close() { w.stop() }

// PushPeers returns how many peers connected in swarms of key's bundles
// take relay_record messages.
func (c *Client) PushPeers(key signer.PublicKey) int {
	if tc := c.startedTransfer(); tc != nil {
		return tc.RecordPeersOf(key)
	}
	return 0
}

// fetchWoken runs Fetch, with o.Pushed for a check a peer's packet woke,
// and reports quiet when such a check found nothing to say: the packets
// held name no new release (not yet enough release keys' records, or the
// change was another channel's).
func (c *Client) fetchWoken(ctx context.Context, o FetchOptions, pushed bool) (res *FetchResult, err error, quiet bool) {
	o.Pushed = pushed
	found := false
	onFound := o.OnFound
	o.OnFound = func(r record.Release, previous record.Version) {
		found = true
		if onFound != nil {
			onFound(r, previous)
		}
	}
	res, err = c.Fetch(ctx, o)
	quiet = pushed && !found && !errors.Is(err, ErrRevokedInstall) && (err != nil || res.UpToDate && !o.Again)
	return res, err, quiet
}

// learnt is called with a packet that passed the record checks of a
// fetch: it is kept, and told to the key's swarm if it is news.
func (c *Client) learnt(p *record.SignedPacket) {
	if !c.pushes.offer(p) {
		return
	}
	if tc := c.startedTransfer(); tc != nil {
		tc.ShareRecord(p)
	}
}

// onRecord takes a packet a peer sent (relay_record; its signature is
// checked). It runs the record checks of the verification chain on it,
// as on a DHT answer, for every channel of its key that this client
// watches or accepted a release of: with one passing, the packet is
// kept, wakes the watches of its key (which fetch and check the rest),
// and is passed on to the swarm; otherwise it is dropped.
func (c *Client) onRecord(p *record.SignedPacket) {
	if cur := c.pushes.get(p.Key); cur != nil && cur.Seq >= p.Seq {
		return
	}
	accepted := map[string]record.Accepted{}
	for _, ch := range c.pushes.channels(p.Key) {
		accepted[ch] = record.Accepted{}
	}
	if states, err := c.states.List(); err == nil {
		for _, st := range states {
			if st.Key == p.Key {
				accepted[st.Channel] = st.Accepted
			}
		}
	}
	policy := record.Policy{Now: c.now(), MaxFuture: c.cfg.MaxFuture}
	if len(accepted) == 0 {
		c.onChainRecord(p, policy)
		return
	}
	if ch, saved, err := c.states.loadChain(p.Key); err == nil && saved && ch.Root == p.Key {
		// A root that delegates: its packet holds the delegation.
		if _, ok, err := record.CheckDelegation(p, p.Key, ch.Seq, policy); err == nil && ok {
			c.learnt(p)
		} else {
			c.log.Debug("refused a root's record a peer sent", "key", p.Key, "seq", p.Seq, "err", err)
		}
		return
	}
	var errs []error
	for ch, last := range accepted {
		_, err := record.Check(p, p.Key, ch, last, policy)
		if err == nil {
			c.log.Debug("a peer told of a newer record", "key", p.Key, "seq", p.Seq)
			c.learnt(p)
			return
		}
		errs = append(errs, err)
	}
	c.log.Debug("refused a record a peer sent", "key", p.Key, "seq", p.Seq, "err", errors.Join(errs...))
}

// onChainRecord takes a packet a peer sent of a key that a followed key's
// releases depend on (docs/spec/keys.md): the current root's, checked as
// a delegation against the newest seq seen from it, or a release key's
// that the newest delegation held names, unrevoked, for a followed channel,
// whose record there passes the record checks (signature, seq, expiry, not
// below the accepted version). It is kept and passed on if it passes.
func (c *Client) onChainRecord(p *record.SignedPacket, policy record.Policy) {
	var follows []Follow
	c.pushes.mu.Lock()
	for f := range c.pushes.follows {
		follows = append(follows, f)
	}
	c.pushes.mu.Unlock()
	if states, err := c.states.List(); err == nil {
		for _, st := range states {
			follows = append(follows, Follow{Key: st.Key, Channel: st.Channel})
		}
	}
	var errs []error
	for _, f := range follows {
		ch, saved, err := c.states.loadChain(f.Key)
		if err != nil || !saved || ch.Packet == nil {
			continue
		}
		if p.Key == ch.Root {
			if _, ok, err := record.CheckDelegation(p, ch.Root, ch.Seq, policy); err == nil && ok {
				c.learnt(p)
				return
			}
			errs = append(errs, err)
			continue
		}
		rootp := ch.Packet
		if held := c.pushes.get(ch.Root); held != nil && held.Seq > rootp.Seq {
			rootp = held
		}
		d, ok, err := record.FindDelegation(ch.Root, rootp.Packet)
		if err != nil || !ok || !slices.Contains(d.Signers(f.Channel), p.Key) {
			continue
		}
		st, err := c.states.Load(f.Key, f.Channel)
		if err != nil {
			continue
		}
		last := record.Accepted{Version: st.Version}
		if cur := c.pushes.get(p.Key); cur != nil {
			last.Seq = cur.Seq
		}
		if _, err := record.Check(p, p.Key, f.Channel, last, policy); err != nil {
			errs = append(errs, err)
			continue
		}
		c.learnt(p)
		return
	}
	c.log.Debug("refused a record a peer sent", "key", p.Key, "seq", p.Seq, "err", errors.Join(errs...))
}

// all returns the newest packet of every key held.
func (ps *pushes) all() []*record.SignedPacket {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	out := make([]*record.SignedPacket, 0, len(ps.newest))
	for _, p := range ps.newest {
		out = append(out, p)
	}
	return out
}

// shareKnown tells a torrent client just started the newest packet of
// each key this client holds.
func (c *Client) shareKnown(tc *transfer.Client) {
	for _, p := range c.pushes.all() {
		tc.ShareRecord(p)
	}
}
