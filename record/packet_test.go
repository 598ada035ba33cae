package record

import (
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestReleaseRoundTrip(t *testing.T) {
	k := fixedKey(t, 1).PublicKey()
	for _, r := range []Release{
		testRelease("stable", "1.4.2"),
		testRelease("nightly-2", "2.0.0-rc.1+build.5"),
		func() Release { r := testRelease("x", "0.0.1"); r.WebSeeds = nil; return r }(),
	} {
		packet := mustSetRelease(t, k, nil, r)
		got, err := FindRelease(k, packet, r.Channel)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.WebSeeds, r.WebSeeds) || got.Version.String() != r.Version.String() ||
			got.Infohash != r.Infohash || got.Manifest != r.Manifest || got.Size != r.Size || !got.Expires.Equal(r.Expires) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, r)
		}
	}
}

func TestSetReleaseKeepsOtherRecords(t *testing.T) {
	k := fixedKey(t, 1).PublicKey()
	// A packet another application wrote: an A record at the apex and a
	// TXT of its own, then relay's stable and beta channels.
	a := &dns.A{Hdr: dns.RR_Header{Name: k.String() + ".", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(10, 0, 0, 1)}
	other := &dns.TXT{Hdr: dns.RR_Header{Name: "_other." + k.String() + ".", Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: []string{"hello"}}
	p, err := BuildPacket([]dns.RR{a, other})
	if err != nil {
		t.Fatal(err)
	}
	p = mustSetRelease(t, k, p, testRelease("stable", "1.0.0"))
	p = mustSetRelease(t, k, p, testRelease("beta", "1.1.0-rc.1"))
	p = mustSetRelease(t, k, p, testRelease("stable", "1.0.1"))

	chans, err := Channels(k, p)
	if err != nil || !reflect.DeepEqual(chans, []string{"beta", "stable"}) {
		t.Fatalf("Channels = %v, %v", chans, err)
	}
	for ch, v := range map[string]string{"stable": "1.0.1", "beta": "1.1.0-rc.1"} {
		r, err := FindRelease(k, p, ch)
		if err != nil || r.Version.String() != v {
			t.Fatalf("%s: %v %v, want %s", ch, r.Version, err, v)
		}
	}
	m, _ := ParsePacket(p)
	if len(m.Answer) != 4 {
		t.Fatalf("%d answers, want 4: %v", len(m.Answer), m.Answer)
	}
	if m.Answer[0].String() != a.String() || m.Answer[1].String() != other.String() {
		t.Fatalf("other records changed: %v", m.Answer[:2])
	}
	if _, err := FindRelease(k, p, "nightly"); !errors.Is(err, ErrNoRelease) {
		t.Fatalf("missing channel: %v", err)
	}
}

func TestReadsRelativeAndUncompressedNames(t *testing.T) {
	k := fixedKey(t, 1).PublicKey()
	r := testRelease("stable", "3.2.1")
	txt, err := r.TXT(k)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"stable._relay.", "STABLE._Relay." + strings.ToUpper(k.String()) + "."} {
		rr := *txt
		rr.Hdr.Name = name
		m := &dns.Msg{Answer: []dns.RR{&rr}} // uncompressed
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		got, err := FindRelease(k, b, "stable")
		if err != nil || got.Version.String() != "3.2.1" {
			t.Fatalf("owner %q: %v %v", name, got.Version, err)
		}
	}
	// A record under another key's name is not this key's.
	other := fixedKey(t, 2).PublicKey()
	rr := *txt
	rr.Hdr.Name = Owner(other, "stable")
	b, _ := (&dns.Msg{Answer: []dns.RR{&rr}}).Pack()
	if _, err := FindRelease(k, b, "stable"); !errors.Is(err, ErrNoRelease) {
		t.Fatalf("record under another key: %v", err)
	}
}

func txtPacket(t *testing.T, channel string, strs ...string) []byte {
	t.Helper()
	k := fixedKey(t, 1).PublicKey()
	rr := &dns.TXT{Hdr: dns.RR_Header{Name: Owner(k, channel), Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 300}, Txt: strs}
	b, err := (&dns.Msg{Answer: []dns.RR{rr}, Compress: true}).Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRecordRefusals(t *testing.T) {
	k := fixedKey(t, 1).PublicKey()
	ih := "bt=0123456789abcdef0123456789abcdef01234567"
	m := "m=" + strings.Repeat("ab", 32)
	base := []string{"v=1.0.0", ih, m, "n=10", "exp=1800000000"}
	with := func(extra ...string) []string { return append(append([]string{}, base...), extra...) }
	without := func(key string) []string {
		var out []string
		for _, s := range base {
			if !strings.HasPrefix(s, key+"=") {
				out = append(out, s)
			}
		}
		return out
	}
	for name, strs := range map[string][]string{
		"missing v":        without("v"),
		"missing bt":       without("bt"),
		"missing m":        without("m"),
		"missing n":        without("n"),
		"missing exp":      without("exp"),
		"v twice":          with("v=1.0.1"),
		"bt twice":         with(ih),
		"exp twice":        with("exp=1800000001"),
		"bad version":      {"v=1.0", ih, m, "n=10", "exp=1800000000"},
		"v prefix":         {"v=v1.0.0", ih, m, "n=10", "exp=1800000000"},
		"leading zero":     {"v=01.0.0", ih, m, "n=10", "exp=1800000000"},
		"short infohash":   {"v=1.0.0", "bt=0123", m, "n=10", "exp=1800000000"},
		"non-hex infohash": {"v=1.0.0", "bt=" + strings.Repeat("zz", 20), m, "n=10", "exp=1800000000"},
		"bad sha":          {"v=1.0.0", ih, "m=abc", "n=10", "exp=1800000000"},
		"negative size":    {"v=1.0.0", ih, m, "n=-1", "exp=1800000000"},
		"zero size":        {"v=1.0.0", ih, m, "n=0", "exp=1800000000"},
		"signed size":      {"v=1.0.0", ih, m, "n=+5", "exp=1800000000"},
		"huge size":        {"v=1.0.0", ih, m, "n=99999999999999999999", "exp=1800000000"},
		"bad expiry":       {"v=1.0.0", ih, m, "n=10", "exp=soon"},
		"ftp web seed":     with("ws=ftp://example.com/"),
	} {
		_, err := FindRelease(k, txtPacket(t, "stable", strs...), "stable")
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	// Unknown keys and strings with no '=' are ignored.
	r, err := FindRelease(k, txtPacket(t, "stable", with("future=yes", "sig2=abc", "comment")...), "stable")
	if err != nil || r.Size != 10 {
		t.Fatalf("unknown keys: %v", err)
	}
	// Two records for one channel are ambiguous.
	p := txtPacket(t, "stable", base...)
	msg, _ := ParsePacket(p)
	msg.Answer = append(msg.Answer, dns.Copy(msg.Answer[0]))
	p2, _ := msg.Pack()
	if _, err := FindRelease(k, p2, "stable"); !errors.Is(err, ErrMalformed) {
		t.Fatalf("two records: %v", err)
	}
	if _, err := FindRelease(k, []byte{1, 2, 3}, "stable"); !errors.Is(err, ErrMalformed) {
		t.Fatalf("garbage packet: %v", err)
	}
	if _, err := FindRelease(k, p, "Stable"); !errors.Is(err, ErrMalformed) {
		t.Fatalf("bad channel name: %v", err)
	}
}

func TestBuildRefusals(t *testing.T) {
	k := fixedKey(t, 1).PublicKey()
	long := testRelease("stable", "1.0.0")
	long.WebSeeds = []string{"https://example.com/" + strings.Repeat("a", 240)}
	if _, err := SetRelease(k, nil, long); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "TXT string") {
		t.Fatalf("web seed over 255 bytes: %v", err)
	}
	quoted := testRelease("stable", "1.0.0")
	quoted.WebSeeds = []string{`https://example.com/"x"`}
	if _, err := SetRelease(k, nil, quoted); !errors.Is(err, ErrMalformed) {
		t.Fatalf("quote in web seed: %v", err)
	}
	for name, mod := range map[string]func(*Release){
		"channel":  func(r *Release) { r.Channel = "Stable" },
		"long ch":  func(r *Release) { r.Channel = strings.Repeat("a", 64) },
		"version":  func(r *Release) { r.Version = Version{} },
		"infohash": func(r *Release) { r.Infohash = Infohash{} },
		"manifest": func(r *Release) { r.Manifest = Digest{} },
		"size":     func(r *Release) { r.Size = 0 },
		"expiry":   func(r *Release) { r.Expires = time.Time{} },
	} {
		r := testRelease("stable", "1.0.0")
		mod(&r)
		if _, err := SetRelease(k, nil, r); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	// Channels until the packet is full: the one that does not fit is
	// refused with ErrTooLarge, and every packet built is at most 996 bytes.
	var p []byte
	for i := 0; ; i++ {
		next, err := SetRelease(k, p, testRelease("channel-"+string(rune('a'+i)), "1.0.0"))
		if errors.Is(err, ErrTooLarge) {
			if i < 2 {
				t.Fatalf("only %d channels fit", i)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(next) > MaxPacketSize {
			t.Fatalf("built %d bytes", len(next))
		}
		p = next
	}
	if _, err := ParsePacket(make([]byte, MaxPacketSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("997-byte packet: %v", err)
	}
}

func TestVersionOrder(t *testing.T) {
	// semver.org's precedence example, in order.
	order := []string{"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.10.0", "2.0.0"}
	for i := range order {
		for j := range order {
			a, b := MustParseVersion(order[i]), MustParseVersion(order[j])
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := a.Compare(b); got != want {
				t.Errorf("Compare(%s, %s) = %d, want %d", a, b, got, want)
			}
		}
	}
	if (Version{}).Compare(MustParseVersion("0.0.0")) != -1 {
		t.Error("zero Version does not sort first")
	}
	for _, bad := range []string{"", "1", "1.2", "1.2.3.4", "01.2.3", "1.2.3-", "1.2.3-a..b", "x.y.z", "1.2.3 "} {
		if _, err := ParseVersion(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseVersion(%q) = %v", bad, err)
		}
	}
}
