package record

import (
	"bytes"
	"fmt"
	"slices"
	"time"

	"github.com/relay-sh/relay/signer"
)

// CheckDelegation runs steps 2 and 3 of the verification chain on the
// packet p found for root and reads root's delegation from it: the packet
// must be signed by root, its seq not below lastSeq (the newest delegation
// this watcher saw from root: an older one would undo a revocation) nor too
// far in the future. ok is false when root delegates nothing (it signs its
// own releases). A delegation past its expiry is ErrExpired, with the
// delegation, unless pol.AllowExpired.
func CheckDelegation(p *SignedPacket, root signer.PublicKey, lastSeq int64, pol Policy) (d Delegation, ok bool, err error) {
	if err := checkPacket(p, root, lastSeq, pol); err != nil {
		return Delegation{}, false, err
	}
	d, ok, err = FindDelegation(root, p.Packet)
	if err != nil || !ok {
		return Delegation{}, false, err
	}
	if !pol.AllowExpired && !pol.Now.Before(d.Expires) {
		return d, true, fmt.Errorf("%w: delegation of root %s expired %s", ErrExpired, root, d.Expires.Format(time.RFC3339))
	}
	return d, true, nil
}

// Signed is a release record read from the packet of one release key.
type Signed struct {
	Key     signer.PublicKey
	Release Release
}

// Quorum picks the release of channel that d lets count: the highest
// version whose record (version, infohash, manifest and size) at least
// d.Threshold distinct keys that d names for channel, and does not revoke,
// signed. Records of other keys, and a key's second record, are ignored.
// It returns the release, its expiry the earliest of its signers', its web
// seeds theirs together, and its signers sorted.
//
// Then, as Check does for a single key: a version below last.Version is
// ErrRollback; a release whose signers are enough only counting expired
// records is ErrExpired with the release (unless pol.AllowExpired). Too few
// signers, or two records of one version that both count, is
// ErrThreshold; no record at all is ErrNoRelease.
func Quorum(d Delegation, channel string, found []Signed, last Accepted, pol Policy) (Release, []signer.PublicKey, error) {
	allowed := d.Signers(channel)
	if len(allowed) < d.Threshold || len(allowed) == 0 {
		return Release{}, nil, fmt.Errorf("%w: the delegation lets %d of its keys sign channel %q and needs %d", ErrThreshold, len(allowed), channel, d.Threshold)
	}
	type group struct {
		r           Release
		fresh, all  []signer.PublicKey
		webSeeds    []string
		earliestExp time.Time
	}
	var groups []*group
	seen := map[signer.PublicKey]bool{}
	for _, s := range found {
		if !slices.Contains(allowed, s.Key) || seen[s.Key] || s.Release.Channel != channel {
			continue
		}
		seen[s.Key] = true
		i := slices.IndexFunc(groups, func(g *group) bool { return sameRelease(g.r, s.Release) })
		if i < 0 {
			groups = append(groups, &group{r: s.Release})
			i = len(groups) - 1
		}
		g := groups[i]
		g.all = append(g.all, s.Key)
		if pol.AllowExpired || pol.Now.Before(s.Release.Expires) {
			g.fresh = append(g.fresh, s.Key)
			if g.earliestExp.IsZero() || s.Release.Expires.Before(g.earliestExp) {
				g.earliestExp = s.Release.Expires
			}
		}
		for _, u := range s.Release.WebSeeds {
			if !slices.Contains(g.webSeeds, u) {
				g.webSeeds = append(g.webSeeds, u)
			}
		}
	}
	if len(groups) == 0 {
		return Release{}, nil, fmt.Errorf("%w: %q: none of the release keys the delegation names (%d) signed one", ErrNoRelease, channel, len(allowed))
	}
	// The highest version first; of one version, the most signers first.
	slices.SortStableFunc(groups, func(a, b *group) int {
		if c := b.r.Version.Compare(a.r.Version); c != 0 {
			return c
		}
		return len(b.fresh) - len(a.fresh)
	})
	var best, stale *group
	for i, g := range groups {
		if len(g.fresh) >= d.Threshold {
			if i+1 < len(groups) && groups[i+1].r.Version.Compare(g.r.Version) == 0 && len(groups[i+1].fresh) >= d.Threshold {
				return Release{}, nil, fmt.Errorf("%w: keys signed two different records of %s (manifests %s and %s)",
					ErrThreshold, g.r.Version, g.r.Manifest, groups[i+1].r.Manifest)
			}
			best = g
			break
		}
		if stale == nil && len(g.all) >= d.Threshold {
			stale = g
		}
	}
	if best == nil {
		if stale != nil {
			return stale.r, nil, fmt.Errorf("%w: the records of %s signed by %d key(s) expired", ErrExpired, stale.r.Version, len(stale.all))
		}
		g := groups[0]
		return Release{}, nil, fmt.Errorf("%w: %s of channel %q has %d of the %d signatures it needs", ErrThreshold, g.r.Version, channel, len(g.fresh), d.Threshold)
	}
	r := best.r
	r.Expires, r.WebSeeds = best.earliestExp, best.webSeeds
	signers := slices.Clone(best.fresh)
	slices.SortFunc(signers, func(a, b signer.PublicKey) int { return bytes.Compare(a[:], b[:]) })
	if r.Version.Less(last.Version) {
		return r, signers, fmt.Errorf("%w: record has %s, %s was accepted", ErrRollback, r.Version, last.Version)
	}
	return r, signers, nil
}

// sameRelease reports whether a and b name the same release: version,
// bundle, manifest and size (not expiry or web seeds, each signer's own).
func sameRelease(a, b Release) bool {
	return a.Version.Compare(b.Version) == 0 && a.Version.String() == b.Version.String() &&
		a.Infohash == b.Infohash && a.Manifest == b.Manifest && a.Size == b.Size
}
