package relay

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/relay-sh/relay/dht"
	"github.com/relay-sh/relay/httprelay"
	"github.com/relay-sh/relay/internal/atomicfile"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
)

// ErrRevokedInstall is returned when the release this data folder
// installed was signed by a key that the root's delegation now revokes, and
// nothing newer can replace it: the user should know that a thief's release
// may be running. It wraps record.ErrRevoked.
var ErrRevokedInstall = fmt.Errorf("the installed release was %w", record.ErrRevoked)

// maxHops bounds how many successor roots one check follows.
const maxHops = 8

// chainFile is the name, in a followed key's state folder, of what this
// data folder knows of the key's roots. Its leading "_" keeps it apart
// from the channels' state files.
const chainFile = "_keys.json"

// Chain is what this data folder knows of a followed key's roots: the
// root it follows now (the key itself, or the last successor it moved to)
// and the newest packet it saw from that root. It only moves forward: an
// older root packet (a delegation that did not yet revoke a key) is
// refused.
type Chain struct {
	// Key is the followed key.
	Key signer.PublicKey `json:"key"`
	// Root is the current root; Roots the ones passed before it, Key first.
	Root  signer.PublicKey   `json:"root"`
	Roots []signer.PublicKey `json:"roots,omitempty"`
	// Seq is the seq of the newest packet seen from Root.
	Seq int64 `json:"seq"`
	// Packet is that packet, for seeders to store again.
	Packet *record.SignedPacket `json:"-"`
	// Updated is when this file was written.
	Updated time.Time `json:"updated"`
}

type chainFileJSON struct {
	Chain
	Body string `json:"packet,omitempty"`
}

func (s stateStore) chainPath(key signer.PublicKey) string {
	return filepath.Join(s.dir, key.String(), chainFile)
}

// loadChain returns key's chain; ok is false when none was saved (the key
// never delegated nor rotated as far as this data folder saw).
func (s stateStore) loadChain(key signer.PublicKey) (ch Chain, ok bool, err error) {
	p := s.chainPath(key)
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return Chain{Key: key, Root: key}, false, nil
	}
	if err != nil {
		return Chain{}, false, fmt.Errorf("%w: %v", ErrState, err)
	}
	var f chainFileJSON
	if err := json.Unmarshal(data, &f); err != nil {
		return Chain{}, false, fmt.Errorf("%w: %s: %v", ErrState, p, err)
	}
	if f.Key != key || f.Root.IsZero() {
		return Chain{}, false, fmt.Errorf("%w: %s is not the chain of %s", ErrState, p, key)
	}
	ch = f.Chain
	if f.Body != "" {
		body, err := hex.DecodeString(f.Body)
		if err == nil {
			ch.Packet, err = record.ParseBody(ch.Root, body)
		}
		if err != nil {
			return Chain{}, false, fmt.Errorf("%w: %s: packet: %v", ErrState, p, err)
		}
	}
	return ch, true, nil
}

// saveChain writes ch atomically.
func (s stateStore) saveChain(ch Chain) error {
	f := chainFileJSON{Chain: ch}
	if ch.Packet != nil {
		f.Body = hex.EncodeToString(ch.Packet.Body())
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("failed to encode the chain of roots: %w", err)
	}
	p := s.chainPath(ch.Key)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("failed to save the chain of roots: %w", err)
	}
	if err := atomicfile.WriteFile(p, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("failed to save the chain of roots: %w", err)
	}
	return nil
}

// checked is what checkRelease found for a followed key's channel.
type checked struct {
	// Root is the packet of the current root; Packet the one the release
	// came in (the root's when it signs its own releases, else the first
	// signer's).
	Root, Packet *record.SignedPacket
	// Delegation is the current root's, nil when it signs its own releases.
	Delegation *record.Delegation
	Release    record.Release
	// Signers are the release keys that signed Release under Delegation;
	// the root alone when it signs itself and is not the followed key.
	Signers []signer.PublicKey
	Stats   dht.ResolveStats
	Relays  httprelay.GetStats
	// packets are the packets of the current root and of Signers.
	packets map[signer.PublicKey]*record.SignedPacket
	// chain is the chain to save once the check passed the root's steps;
	// moved says whether it differs from the saved one.
	chain Chain
	moved bool
}

// checkRelease runs steps 1 to 4 of the verification chain for key's
// channel, following the key's roots (docs/spec/keys.md): from the
// current root along its successors, then the release keys its delegation
// names, in parallel, counting their records against its threshold. floor
// is what was accepted for the channel. A verification error comes with
// what was found so far. With save, a newer root packet or a move to a
// successor is persisted at once, whatever the release's fate: a watcher
// never goes back to an older delegation.
//
// With held, no network is asked: each packet is the newest this client
// holds (told by a peer of the key's swarm, or found by an earlier check;
// the root's may be the saved chain's), and a packet not held is
// ErrNotHeld.
func (c *Client) checkRelease(ctx context.Context, key signer.PublicKey, channel string, floor record.Accepted, pol record.Policy, save, held bool) (*checked, error) {
	ch, saved, err := c.states.loadChain(key)
	if err != nil {
		return nil, err
	}
	resolve := c.resolveBoth
	if held {
		resolve = c.heldResolver(ch)
	}
	res := &checked{chain: ch, packets: make(map[signer.PublicKey]*record.SignedPacket)}
	lastSeq := ch.Seq
	if ch.Root == key {
		lastSeq = max(lastSeq, floor.Seq)
	}
	// The release keys the saved delegation names are looked up while
	// the root is: when the root's packet still names them, as it does
	// but after a rotation or revocation, a check costs one lookup's time.
	pctx, cancel := context.WithCancel(ctx)
	var pre *prefetch
	if saved && ch.Packet != nil && !held {
		if d, ok, err := record.FindDelegation(ch.Root, ch.Packet.Packet); err == nil && ok && d.Next.IsZero() {
			pre = c.prefetch(pctx, ch.Root, d.Signers(channel))
		}
	}
	defer func() {
		cancel()
		pre.wait()
	}()
	for hop := 0; ; hop++ {
		root := res.chain.Root
		p, stats, relays, err := resolve(ctx, root)
		if hop == 0 {
			res.Stats, res.Relays = stats, relays
		}
		if err != nil {
			if hop > 0 {
				err = fmt.Errorf("successor root %s: %w", root, err)
			}
			return res, err
		}
		res.Root = p
		res.packets[root] = p
		d, ok, err := record.CheckDelegation(p, root, lastSeq, pol)
		if err != nil {
			if saved || hop > 0 {
				return res, fmt.Errorf("root %s: %w", root, err)
			}
			// A key that signs its own releases: as before delegations.
			return res, err
		}
		if ok || saved || res.moved {
			if p.Seq > res.chain.Seq || res.chain.Packet == nil {
				res.chain.Seq, res.chain.Packet, res.moved = p.Seq, p, true
			}
		}
		if !ok {
			break
		}
		res.Delegation = &d
		if d.Next.IsZero() {
			break
		}
		if hop+1 >= maxHops || d.Next == key || slices.Contains(res.chain.Roots, d.Next) {
			return res, fmt.Errorf("%w: root %s names successor %s, which is on the chain already or %d roots away", record.ErrMalformed, root, d.Next, maxHops)
		}
		res.chain.Roots = append(res.chain.Roots, root)
		res.chain.Root, res.chain.Seq, res.chain.Packet = d.Next, 0, nil
		res.Delegation, res.moved, lastSeq = nil, true, 0
		c.log.Info("following the successor root", "key", key, "from", root, "to", d.Next)
	}
	if save && res.moved {
		res.chain.Updated = c.now().UTC()
		if err := c.states.saveChain(res.chain); err != nil {
			return res, err
		}
	}
	root := res.chain.Root
	if res.Delegation == nil {
		res.Packet = res.Root
		if root != key {
			res.Signers = []signer.PublicKey{root}
		}
		// The root signs its own releases: the checks of
		// docs/spec/verification.md, the seq
		// already checked against the newest seen.
		floor.Seq = 0
		res.Release, err = record.Check(res.Root, root, channel, floor, pol)
		return res, err
	}
	found, packets := c.resolveSigners(ctx, resolve, res.Root, res.Delegation.Signers(channel), channel, pre.wait())
	res.Release, res.Signers, err = record.Quorum(*res.Delegation, channel, found, floor, pol)
	for _, k := range res.Signers {
		res.packets[k] = packets[k]
	}
	if len(res.Signers) > 0 {
		res.Packet = packets[res.Signers[0]]
	} else if len(found) > 0 {
		res.Packet = packets[found[0].Key]
	}
	return res, err
}

// resolver gets a key's packet: resolveBoth, or heldResolver's.
type resolver func(ctx context.Context, key signer.PublicKey) (*record.SignedPacket, dht.ResolveStats, httprelay.GetStats, error)

// ErrNotHeld is returned by a check with FetchOptions.Pushed when this
// client holds no packet of a key the check needs.
var ErrNotHeld = errors.New("no packet of this key held here")

// heldResolver returns a resolver that asks no network: the newest packet
// of a key this client holds, or for ch's root the saved one if newer.
func (c *Client) heldResolver(ch Chain) resolver {
	return func(_ context.Context, k signer.PublicKey) (*record.SignedPacket, dht.ResolveStats, httprelay.GetStats, error) {
		p := c.pushes.get(k)
		if k == ch.Root && ch.Packet != nil && (p == nil || ch.Packet.Seq > p.Seq) {
			p = ch.Packet
		}
		if p == nil {
			return nil, dht.ResolveStats{}, httprelay.GetStats{}, fmt.Errorf("%w: %s", ErrNotHeld, k)
		}
		return p, dht.ResolveStats{}, httprelay.GetStats{}, nil
	}
}

// resolveSigners resolves the packets of keys in parallel (a key equal to
// root's is read from root) and returns the records of channel they hold,
// and the packets by key. A key that has none, or whose packet cannot be
// had, is left out: the threshold says whether enough remain.
func (c *Client) resolveSigners(ctx context.Context, resolve resolver, root *record.SignedPacket, keys []signer.PublicKey, channel string, pre map[signer.PublicKey]*record.SignedPacket) ([]record.Signed, map[signer.PublicKey]*record.SignedPacket) {
	packets := make(map[signer.PublicKey]*record.SignedPacket, len(keys))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, k := range keys {
		if k == root.Key {
			packets[k] = root
			continue
		}
		if p := pre[k]; p != nil {
			packets[k] = p
			continue
		}
		wg.Go(func() {
			p, _, _, err := resolve(ctx, k)
			if err != nil {
				c.log.Debug("no packet from a release key", "key", k, "err", err)
				return
			}
			mu.Lock()
			packets[k] = p
			mu.Unlock()
		})
	}
	wg.Wait()
	var found []record.Signed
	for _, k := range keys {
		p := packets[k]
		if p == nil {
			continue
		}
		r, err := record.FindRelease(k, p.Packet, channel)
		if err != nil {
			c.log.Debug("no release record from a release key", "key", k, "channel", channel, "err", err)
			continue
		}
		found = append(found, record.Signed{Key: k, Release: r})
	}
	return found, packets
}

// prefetch is a round of release keys' lookups started before the
// delegation that names them is checked.
type prefetch struct {
	wg      sync.WaitGroup
	mu      sync.Mutex
	packets map[signer.PublicKey]*record.SignedPacket
}

// prefetch starts looking up the packets of keys, root's aside; wait
// returns them.
func (c *Client) prefetch(ctx context.Context, root signer.PublicKey, keys []signer.PublicKey) *prefetch {
	pf := &prefetch{packets: make(map[signer.PublicKey]*record.SignedPacket, len(keys))}
	for _, k := range keys {
		if k == root {
			continue
		}
		pf.wg.Go(func() {
			if p, _, _, err := c.resolveBoth(ctx, k); err == nil {
				pf.mu.Lock()
				pf.packets[k] = p
				pf.mu.Unlock()
			}
		})
	}
	return pf
}

// wait waits for the lookups and returns the packets found (nil for a nil
// prefetch).
func (pf *prefetch) wait() map[signer.PublicKey]*record.SignedPacket {
	if pf == nil {
		return nil
	}
	pf.wg.Wait()
	pf.mu.Lock()
	defer pf.mu.Unlock()
	return pf.packets
}

// revokedSigners returns the keys among those that signed the accepted
// release st (the followed key itself when none are recorded) that d
// revokes.
func revokedSigners(st State, d *record.Delegation) []signer.PublicKey {
	if d == nil || st.Version.IsZero() {
		return nil
	}
	signers := st.Signers
	if len(signers) == 0 {
		signers = []signer.PublicKey{st.Key}
	}
	var out []signer.PublicKey
	for _, k := range signers {
		if d.IsRevoked(k) {
			out = append(out, k)
		}
	}
	return out
}

// chainKeys returns the keys whose packets keep key's releases alive
// besides key's own, as far as this data folder knows: the roots it moved
// through and to, and the release keys the current root's delegation
// names. A seeder stores each of their packets again.
//
// The torrent client asks for every relay_record message it sends or
// takes, holding its lock, so an answer is kept for swarmKeysLife instead
// of reading the chain from the data folder each time; a key a newer
// delegation adds or revokes travels (or stops) that much later, and a
// receiver checks every packet against its own chain anyway.
func (c *Client) chainKeys(key signer.PublicKey) []signer.PublicKey {
	return c.swarmKeys.get(key, c.now(), c.readChainKeys)
}

// swarmKeysLife is how long chainKeys keeps an answer.
const swarmKeysLife = 2 * time.Second

// swarmKeys keeps chainKeys' recent answers, at most one per key followed
// in the swarms (a handful); it is emptied when it grows past 256.
type swarmKeys struct {
	mu sync.Mutex
	m  map[signer.PublicKey]keptKeys
}

type keptKeys struct {
	keys []signer.PublicKey
	at   time.Time
}

func (s *swarmKeys) get(key signer.PublicKey, now time.Time, read func(signer.PublicKey) []signer.PublicKey) []signer.PublicKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k, ok := s.m[key]; ok && now.Sub(k.at) < swarmKeysLife && !now.Before(k.at) {
		return k.keys
	}
	if s.m == nil || len(s.m) >= 256 {
		s.m = make(map[signer.PublicKey]keptKeys)
	}
	keys := read(key)
	s.m[key] = keptKeys{keys: keys, at: now}
	return keys
}

// readChainKeys is chainKeys read from the data folder.
func (c *Client) readChainKeys(key signer.PublicKey) []signer.PublicKey {
	ch, ok, err := c.states.loadChain(key)
	if err != nil || !ok {
		return nil
	}
	keys := append(slices.Clone(ch.Roots), ch.Root)
	if ch.Packet != nil {
		if d, ok, err := record.FindDelegation(ch.Root, ch.Packet.Packet); err == nil && ok {
			for _, k := range d.Keys {
				keys = append(keys, k.Key)
			}
		}
	}
	return slices.DeleteFunc(keys, func(k signer.PublicKey) bool { return k == key })
}

// Store stores an already signed packet (a root's delegation signed
// offline, anyone's record) in the DHT and through the relays, unchanged:
// no key is needed. It returns how many DHT nodes took it.
func (c *Client) Store(ctx context.Context, p *record.SignedPacket) (int, error) {
	if err := p.Verify(); err != nil {
		return 0, err
	}
	st, err := c.storePacket(ctx, p)
	return st.Acked, err
}

// CosignOptions says which release Cosign signs.
type CosignOptions struct {
	// Key is the release key that signs. Required; root's delegation must
	// name it for Channel.
	Key *signer.PrivateKey
	// Root is the key users follow.
	Root signer.PublicKey
	// Channel is the release channel; empty means "stable".
	Channel string
	// Version is the release the signer vouches for: a record of it by
	// another key the delegation names must be in the network, and all
	// such records must agree. Required.
	Version record.Version
	// Manifest, when set, is the manifest sha-256 the signer's own build
	// gave: a record of another manifest is not signed.
	Manifest record.Digest
	// Expires is how long the record stays fresh; zero means
	// DefaultExpires.
	Expires time.Duration
}

// Cosign adds Key's signature to a release another release key of Root's
// delegation signed: it signs the same record (version, bundle, manifest,
// size, web seeds) into Key's own packet, so that the release can reach the
// delegation's threshold. It returns the stored packet and the release.
func (c *Client) Cosign(ctx context.Context, o CosignOptions) (*record.SignedPacket, record.Release, error) {
	channel := channelName(o.Channel)
	if o.Key == nil || o.Version.IsZero() {
		return nil, record.Release{}, fmt.Errorf("%w: cosign needs a key and a version", errBadOptions)
	}
	pol := record.Policy{Now: c.now(), MaxFuture: c.cfg.MaxFuture}
	chk, err := c.checkRelease(ctx, o.Root, channel, record.Accepted{}, pol, false, false)
	if chk == nil || chk.Root == nil {
		return nil, record.Release{}, err
	}
	d := chk.Delegation
	pub := o.Key.PublicKey()
	if d == nil || !slices.Contains(d.Signers(channel), pub) {
		return nil, record.Release{}, fmt.Errorf("%w: the delegation of root %s does not let %s sign channel %q", record.ErrThreshold, chk.Root.Key, pub, channel)
	}
	found, _ := c.resolveSigners(ctx, c.resolveBoth, chk.Root, d.Signers(channel), channel, nil)
	var r record.Release
	for _, s := range found {
		if s.Key == pub || s.Release.Version.Compare(o.Version) != 0 {
			continue
		}
		if !r.Version.IsZero() && (r.Manifest != s.Release.Manifest || r.Infohash != s.Release.Infohash || r.Size != s.Release.Size) {
			return nil, record.Release{}, fmt.Errorf("%w: release keys signed two different records of %s (manifests %s and %s): not signing either",
				record.ErrThreshold, o.Version, r.Manifest, s.Release.Manifest)
		}
		r = s.Release
	}
	if r.Version.IsZero() {
		return nil, record.Release{}, fmt.Errorf("%w: %q: no other release key of root %s signed %s", record.ErrNoRelease, channel, chk.Root.Key, o.Version)
	}
	if !o.Manifest.IsZero() && r.Manifest != o.Manifest {
		return nil, record.Release{}, fmt.Errorf("%w: %s was signed with manifest %s, your build gave %s", record.ErrManifestMismatch, o.Version, r.Manifest, o.Manifest)
	}
	expires := o.Expires
	if expires <= 0 {
		expires = DefaultExpires
	}
	r.Expires = c.now().Add(expires).UTC().Truncate(time.Second)
	p, _, _, err := c.publishPacket(ctx, o.Key, record.ReleaseUpdate(pub, r))
	return p, r, err
}
