package record

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/relay-sh/relay/signer"
)

// delegationLabel is the first label of a delegation record's owner name,
// "_keys._relay.<z32 root>.": it starts with an underscore, so it is never
// read as a channel.
const delegationLabel = "_keys"

// MaxKeys bounds a delegation's key count and threshold: 15 keys, with
// nothing else in the packet, fill it. Named, revoked and successor keys
// share the packet's 996 bytes (55 bytes each).
const MaxKeys = 15

// Delegation is the record a root key (the key users follow) signs to say
// which keys sign its releases: the TXT record "_keys._relay.<root>" in the
// root's own packet. The root signs it once, offline; anyone can store the
// signed packet again unchanged.
type Delegation struct {
	// Keys are the release keys: a release counts when Threshold of them
	// that may sign its channel signed the same record.
	Keys []Delegate
	// Threshold is how many distinct keys must sign the same release
	// (k of len(Keys)); at least 1.
	Threshold int
	// Expires is when the delegation goes stale: past it, no release
	// under it is accepted (a frozen root cannot hold users forever).
	Expires time.Time
	// Revoked are keys that must never be trusted again: what they sign
	// is refused, and a watcher whose installed release they signed is
	// told.
	Revoked []signer.PublicKey
	// Next, when set, is the root's successor: a watcher moves to it and
	// follows its packet from then on, whatever else this record says.
	Next signer.PublicKey
}

// Delegate is one release key of a delegation.
type Delegate struct {
	Key signer.PublicKey
	// Channels are the channels Key may sign; empty means every channel.
	Channels []string
}

// Allows reports whether d may sign releases of channel.
func (d Delegate) Allows(channel string) bool {
	return len(d.Channels) == 0 || slices.Contains(d.Channels, channel)
}

// DelegationOwner returns the owner name of root's delegation record:
// "_keys._relay.<z32 root>.".
func DelegationOwner(root signer.PublicKey) string {
	return delegationLabel + "." + releaseLabel + "." + root.String() + "."
}

// isDelegationOwner reports whether name is root's delegation owner, in
// full or relative (as pkarr normalises names), ignoring case.
func isDelegationOwner(root signer.PublicKey, name string) bool {
	n := strings.ToLower(dns.Fqdn(name))
	n = strings.TrimSuffix(n, root.String()+".")
	return n == delegationLabel+"."+releaseLabel+"."
}

// IsRevoked reports whether d revokes k.
func (d Delegation) IsRevoked(k signer.PublicKey) bool {
	return slices.Contains(d.Revoked, k)
}

// Signers returns the keys whose releases of channel count: the keys d
// names for it, less any it revokes.
func (d Delegation) Signers(channel string) []signer.PublicKey {
	var out []signer.PublicKey
	for _, k := range d.Keys {
		if k.Allows(channel) && !d.IsRevoked(k.Key) {
			out = append(out, k.Key)
		}
	}
	return out
}

// Validate checks d: an expiry, and either a successor or 1 to
// MaxKeys distinct keys with a threshold between 1 and their count,
// valid channels, and no key both named and revoked, nor revoked twice.
func (d Delegation) Validate() error {
	if d.Expires.IsZero() {
		return fmt.Errorf("%w: delegation has no expiry", ErrMalformed)
	}
	if len(d.Keys) == 0 && d.Next.IsZero() {
		return fmt.Errorf("%w: delegation names no release key and no successor root", ErrMalformed)
	}
	if len(d.Keys) > MaxKeys {
		return fmt.Errorf("%w: delegation names %d keys, at most %d", ErrMalformed, len(d.Keys), MaxKeys)
	}
	if len(d.Keys) > 0 && (d.Threshold < 1 || d.Threshold > len(d.Keys)) {
		return fmt.Errorf("%w: threshold %d of %d keys", ErrMalformed, d.Threshold, len(d.Keys))
	}
	seen := map[signer.PublicKey]bool{}
	for _, k := range d.Keys {
		if k.Key.IsZero() {
			return fmt.Errorf("%w: delegation names the zero key", ErrMalformed)
		}
		if seen[k.Key] {
			return fmt.Errorf("%w: delegation names %s twice", ErrMalformed, k.Key)
		}
		seen[k.Key] = true
		for _, ch := range k.Channels {
			if err := ValidChannel(ch); err != nil {
				return fmt.Errorf("channel of %s: %w", k.Key, err)
			}
		}
	}
	rev := map[signer.PublicKey]bool{}
	for _, k := range d.Revoked {
		if seen[k] {
			return fmt.Errorf("%w: delegation both names and revokes %s", ErrMalformed, k)
		}
		if rev[k] {
			return fmt.Errorf("%w: delegation revokes %s twice", ErrMalformed, k)
		}
		rev[k] = true
	}
	if d.IsRevoked(d.Next) {
		return fmt.Errorf("%w: delegation revokes its own successor %s", ErrMalformed, d.Next)
	}
	return nil
}

// TXT returns d as root's delegation record, after checking it.
func (d Delegation) TXT(root signer.PublicKey) (*dns.TXT, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	s := []string{"exp=" + strconv.FormatInt(d.Expires.Unix(), 10)}
	if len(d.Keys) > 0 {
		s = append(s, "t="+strconv.Itoa(d.Threshold))
	}
	for _, k := range d.Keys {
		v := "k=" + k.Key.String()
		if len(k.Channels) > 0 {
			v += ":" + strings.Join(k.Channels, ",")
		}
		if len(v) > maxString {
			return nil, fmt.Errorf("%w: channels of %s do not fit a TXT string", ErrMalformed, k.Key)
		}
		s = append(s, v)
	}
	for _, k := range d.Revoked {
		s = append(s, "rv="+k.String())
	}
	if !d.Next.IsZero() {
		s = append(s, "next="+d.Next.String())
	}
	return &dns.TXT{
		Hdr: dns.RR_Header{Name: DelegationOwner(root), Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: TTL},
		Txt: s,
	}, nil
}

// SetDelegation returns a new DNS packet: old (nil for none) with root's
// delegation record replaced by d, every other record kept.
func SetDelegation(root signer.PublicKey, old []byte, d Delegation) ([]byte, error) {
	txt, err := d.TXT(root)
	if err != nil {
		return nil, err
	}
	return replaceRecord(old, txt, func(name string) bool { return isDelegationOwner(root, name) })
}

// FindDelegation returns root's delegation record in packet. ok is false,
// with no error, when the packet has none: root signs its own releases.
// More than one delegation record, or an invalid one, is ErrMalformed.
func FindDelegation(root signer.PublicKey, packet []byte) (d Delegation, ok bool, err error) {
	m, err := ParsePacket(packet)
	if err != nil {
		return Delegation{}, false, err
	}
	var found []*dns.TXT
	for _, rr := range m.Answer {
		if isDelegationOwner(root, rr.Header().Name) {
			t, isTXT := rr.(*dns.TXT)
			if !isTXT {
				return Delegation{}, false, fmt.Errorf("%w: delegation record of type %s, not TXT", ErrMalformed, dns.TypeToString[rr.Header().Rrtype])
			}
			found = append(found, t)
		}
	}
	switch len(found) {
	case 0:
		return Delegation{}, false, nil
	case 1:
		d, err := parseDelegation(found[0].Txt)
		return d, err == nil, err
	default:
		return Delegation{}, false, fmt.Errorf("%w: %d delegation records", ErrMalformed, len(found))
	}
}

// parseDelegation reads a delegation record's key=value strings. An
// unknown key is ignored; "exp", "t" and "next" set twice, a malformed
// value or a record that does not Validate is ErrMalformed.
func parseDelegation(strs []string) (Delegation, error) {
	var d Delegation
	seen := map[string]bool{}
	for _, s := range strs {
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			continue
		}
		if seen[k] && (k == "exp" || k == "t" || k == "next") {
			return Delegation{}, fmt.Errorf("%w: delegation sets %q twice", ErrMalformed, k)
		}
		seen[k] = true
		var err error
		switch k {
		case "exp":
			var sec int64
			sec, err = parseDecimal(v, "expiry")
			d.Expires = time.Unix(sec, 0).UTC()
		case "t":
			var t int64
			if t, err = parseDecimal(v, "threshold"); err == nil && t > MaxKeys {
				err = fmt.Errorf("%w: threshold %d, at most %d", ErrMalformed, t, MaxKeys)
			}
			d.Threshold = int(t)
		case "k":
			var dk Delegate
			key, chans, restricted := strings.Cut(v, ":")
			if dk.Key, err = parseKey(key); err == nil && restricted {
				dk.Channels = strings.Split(chans, ",")
			}
			d.Keys = append(d.Keys, dk)
		case "rv":
			var key signer.PublicKey
			key, err = parseKey(v)
			d.Revoked = append(d.Revoked, key)
		case "next":
			d.Next, err = parseKey(v)
		}
		if err != nil {
			return Delegation{}, fmt.Errorf("delegation: %w", err)
		}
	}
	if !seen["exp"] {
		return Delegation{}, fmt.Errorf("%w: delegation has no %q", ErrMalformed, "exp")
	}
	if len(d.Keys) > 0 && !seen["t"] {
		return Delegation{}, fmt.Errorf("%w: delegation names keys and no threshold %q", ErrMalformed, "t")
	}
	if err := d.Validate(); err != nil {
		return Delegation{}, fmt.Errorf("delegation: %w", err)
	}
	return d, nil
}

// parseKey parses a public key in z-base-32 as a record writes it: 52
// characters, no "pk:" prefix.
func parseKey(s string) (signer.PublicKey, error) {
	k, err := signer.ParsePublicKey(s)
	if err != nil || strings.HasPrefix(s, "pk:") {
		return signer.PublicKey{}, fmt.Errorf("%w: key %q is not 52 z-base-32 characters", ErrMalformed, clip(s))
	}
	return k, nil
}
