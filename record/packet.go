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

// TTL is the time to live written on relay's TXT records, pkarr's default.
const TTL = 300

// releaseLabel is the label between a channel and the key in an owner name.
const releaseLabel = "_relay"

// Owner returns the owner name of a channel's release record under key:
// "<channel>._relay.<z32 key>.".
func Owner(key signer.PublicKey, channel string) string {
	return channel + "." + releaseLabel + "." + key.String() + "."
}

// channelOf returns the channel whose record owner name is name, for key:
// either "<channel>._relay.<key>." or, as pkarr normalises relative names,
// "<channel>._relay.". Case is ignored, as in DNS.
func channelOf(key signer.PublicKey, name string) (string, bool) {
	n := strings.ToLower(dns.Fqdn(name))
	n = strings.TrimSuffix(n, key.String()+".")
	ch, ok := strings.CutSuffix(n, "."+releaseLabel+".")
	if !ok || ValidChannel(ch) != nil {
		return "", false
	}
	return ch, true
}

// ParsePacket decodes a DNS packet, compressed or not, of at most
// MaxPacketSize bytes.
func ParsePacket(b []byte) (*dns.Msg, error) {
	if len(b) > MaxPacketSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(b), MaxPacketSize)
	}
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		return nil, fmt.Errorf("%w: dns packet: %v", ErrMalformed, err)
	}
	return m, nil
}

// BuildPacket encodes answers as a compressed DNS response packet (pkarr's
// form: id 0, answers only) and refuses one over MaxPacketSize.
func BuildPacket(answers []dns.RR) ([]byte, error) {
	m := &dns.Msg{Compress: true, Answer: answers}
	m.Response = true
	m.Authoritative = true
	b, err := m.Pack()
	if err != nil {
		return nil, fmt.Errorf("%w: dns packet: %v", ErrMalformed, err)
	}
	if len(b) > MaxPacketSize {
		return nil, fmt.Errorf("%w: dns packet of %d bytes, at most %d fit in a BEP 44 item", ErrTooLarge, len(b), MaxPacketSize)
	}
	return b, nil
}

// ReleaseUpdate returns the update a publisher makes to the key's current
// signed packet cur (nil for none), as dht.Node.Publish takes it: the
// packet with r's channel record replaced by r (SetRelease).
func ReleaseUpdate(key signer.PublicKey, r Release) func(cur *SignedPacket) ([]byte, error) {
	return func(cur *SignedPacket) ([]byte, error) {
		var old []byte
		if cur != nil {
			old = cur.Packet
		}
		return SetRelease(key, old, r)
	}
}

// SetRelease returns a new DNS packet: old (nil for none) with r's channel
// record replaced by r, every other record (other channels, other
// applications') kept as it was.
func SetRelease(key signer.PublicKey, old []byte, r Release) ([]byte, error) {
	txt, err := r.TXT(key)
	if err != nil {
		return nil, err
	}
	return replaceRecord(old, txt, func(name string) bool {
		ch, ok := channelOf(key, name)
		return ok && ch == r.Channel
	})
}

// replaceRecord returns a new DNS packet: old (nil for none) without the
// records whose owner name replaced reports, and with rr.
func replaceRecord(old []byte, rr dns.RR, replaced func(name string) bool) ([]byte, error) {
	var answers []dns.RR
	if old != nil {
		m, err := ParsePacket(old)
		if err != nil {
			return nil, fmt.Errorf("current packet: %w", err)
		}
		for _, a := range m.Answer {
			if !replaced(a.Header().Name) {
				answers = append(answers, a)
			}
		}
	}
	return BuildPacket(append(answers, rr))
}

// FindRelease returns the release record of channel in packet, signed by
// key. It is ErrNoRelease when the packet has none, and ErrMalformed when
// it has more than one or the one it has is invalid.
func FindRelease(key signer.PublicKey, packet []byte, channel string) (Release, error) {
	if err := ValidChannel(channel); err != nil {
		return Release{}, err
	}
	m, err := ParsePacket(packet)
	if err != nil {
		return Release{}, err
	}
	var found []*dns.TXT
	for _, rr := range m.Answer {
		if t, ok := rr.(*dns.TXT); ok {
			if ch, ok := channelOf(key, t.Hdr.Name); ok && ch == channel {
				found = append(found, t)
			}
		}
	}
	switch len(found) {
	case 0:
		return Release{}, fmt.Errorf("%w: %q", ErrNoRelease, channel)
	case 1:
		return parseTXT(channel, found[0].Txt)
	default:
		return Release{}, fmt.Errorf("%w: %d records for channel %q", ErrMalformed, len(found), channel)
	}
}

// Channels returns the channels that have a release record in packet,
// sorted, whether or not each record is valid.
func Channels(key signer.PublicKey, packet []byte) ([]string, error) {
	m, err := ParsePacket(packet)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range m.Answer {
		if t, ok := rr.(*dns.TXT); ok {
			if ch, ok := channelOf(key, t.Hdr.Name); ok && !slices.Contains(out, ch) {
				out = append(out, ch)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// TXT returns r as the TXT record of its channel under key, after
// checking every field.
func (r Release) TXT(key signer.PublicKey) (*dns.TXT, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	s := []string{
		"v=" + r.Version.String(),
		"bt=" + r.Infohash.String(),
		"m=" + r.Manifest.String(),
		"n=" + strconv.FormatInt(r.Size, 10),
		"exp=" + strconv.FormatInt(r.Expires.Unix(), 10),
	}
	for _, u := range r.WebSeeds {
		s = append(s, "ws="+u)
	}
	if r.Rollout > 0 {
		s = append(s, "ro="+strconv.Itoa(r.Rollout))
	}
	if r.Critical {
		s = append(s, "crit=1")
	}
	return &dns.TXT{
		Hdr: dns.RR_Header{Name: Owner(key, r.Channel), Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: TTL},
		Txt: s,
	}, nil
}

// Validate checks r's fields: a valid channel and version, a non-zero
// infohash and manifest digest, a positive size, an expiry, and web seeds
// that are plain http(s) URLs fitting a TXT character-string.
func (r Release) Validate() error {
	if err := ValidChannel(r.Channel); err != nil {
		return err
	}
	switch {
	case r.Version.IsZero():
		return fmt.Errorf("%w: release has no version", ErrMalformed)
	case r.Infohash.IsZero():
		return fmt.Errorf("%w: release has no infohash", ErrMalformed)
	case r.Manifest.IsZero():
		return fmt.Errorf("%w: release has no manifest sha-256", ErrMalformed)
	case r.Size <= 0:
		return fmt.Errorf("%w: release size %d is not positive", ErrMalformed, r.Size)
	case r.Expires.IsZero():
		return fmt.Errorf("%w: release has no expiry", ErrMalformed)
	case r.Rollout < 0 || r.Rollout > 99:
		return fmt.Errorf("%w: rollout %d%% is not 1 to 99 (0: every machine)", ErrMalformed, r.Rollout)
	}
	for _, u := range r.WebSeeds {
		if err := validWebSeed(u); err != nil {
			return err
		}
	}
	return nil
}

// maxString is the longest DNS character-string.
const maxString = 255

func validWebSeed(u string) error {
	if len("ws=")+len(u) > maxString {
		return fmt.Errorf("%w: web seed URL of %d bytes does not fit a TXT string (%d)", ErrMalformed, len(u), maxString-len("ws="))
	}
	if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		return fmt.Errorf("%w: web seed %q is not an http or https URL", ErrMalformed, clip(u))
	}
	for _, c := range []byte(u) {
		// Printable ASCII only; no quote or backslash, which DNS text
		// escapes, and no space.
		if c <= ' ' || c >= 0x7f || c == '"' || c == '\\' {
			return fmt.Errorf("%w: web seed %q has a character a URL must escape", ErrMalformed, clip(u))
		}
	}
	return nil
}

// requiredKeys are the keys every release record sets exactly once.
var requiredKeys = []string{"v", "bt", "m", "n", "exp"}

// parseTXT reads a release record's key=value strings. A key set twice, a
// missing required key or a malformed value is ErrMalformed; an unknown
// key, or a string with no "=", is ignored.
func parseTXT(channel string, strs []string) (Release, error) {
	r := Release{Channel: channel}
	seen := map[string]bool{}
	for _, s := range strs {
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			continue
		}
		if seen[k] && slices.Contains(requiredKeys, k) {
			return Release{}, fmt.Errorf("%w: record of channel %q sets %q twice", ErrMalformed, channel, k)
		}
		seen[k] = true
		var err error
		switch k {
		case "v":
			r.Version, err = ParseVersion(v)
			if err == nil && strings.HasPrefix(v, "v") {
				err = fmt.Errorf("%w: version %q has a v prefix", ErrMalformed, clip(v))
			}
		case "bt":
			r.Infohash, err = ParseInfohash(v)
		case "m":
			r.Manifest, err = ParseDigest(v)
		case "n":
			r.Size, err = parseDecimal(v, "size")
		case "exp":
			var sec int64
			sec, err = parseDecimal(v, "expiry")
			r.Expires = time.Unix(sec, 0).UTC()
		case "ws":
			if err = validWebSeed(v); err == nil {
				r.WebSeeds = append(r.WebSeeds, v)
			}
		case "ro":
			// An extension: a reader that does not know it takes the
			// release at once, as every reader did before it.
			var pct int64
			if pct, err = parseDecimal(v, "rollout"); err == nil && (pct < 1 || pct > 100) {
				err = fmt.Errorf("%w: rollout %q is not 1 to 100", ErrMalformed, clip(v))
			}
			if pct < 100 {
				r.Rollout = int(pct)
			}
		case "crit":
			r.Critical = v == "1"
		}
		if err != nil {
			return Release{}, fmt.Errorf("record of channel %q: %w", channel, err)
		}
	}
	for _, k := range requiredKeys {
		if !seen[k] {
			return Release{}, fmt.Errorf("%w: record of channel %q has no %q", ErrMalformed, channel, k)
		}
	}
	if err := r.Validate(); err != nil {
		return Release{}, fmt.Errorf("record of channel %q: %w", channel, err)
	}
	return r, nil
}

// parseDecimal parses a plain decimal: digits only, no sign, no leading
// zero, within int64.
func parseDecimal(s, what string) (int64, error) {
	bad := s == "" || len(s) > 1 && s[0] == '0' || strings.TrimLeft(s, "0123456789") != ""
	n, err := strconv.ParseInt(s, 10, 64)
	if bad || err != nil {
		return 0, fmt.Errorf("%w: %s %q is not a decimal number", ErrMalformed, what, clip(s))
	}
	return n, nil
}
