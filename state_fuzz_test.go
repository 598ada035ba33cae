package relay

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/relay-sh/relay/record"
)

// FuzzStateLoad: a state file of any content either loads or is refused
// with ErrState, never a panic and never as another key's state; what
// loads encodes and loads back the same.
func FuzzStateLoad(f *testing.F) {
	k := testKey(f, 1)
	seedDir := f.TempDir()
	s := newStateStore(seedDir)
	r := record.Release{Channel: "stable", Version: record.MustParseVersion("1.2.3"), Infohash: record.Infohash{1}, Manifest: record.Digest{2}, Size: 9, Expires: time.Unix(2e9, 0)}
	packet, _ := record.SetRelease(k.PublicKey(), nil, r)
	p, _ := record.Sign(k, 12345, packet)
	st := State{Key: k.PublicKey(), Channel: "stable", Accepted: record.Accept(p, r), Infohash: r.Infohash, Packet: p, Updated: time.Unix(1e9, 0).UTC()}
	if err := s.Save(st); err != nil {
		f.Fatal(err)
	}
	good, err := os.ReadFile(s.path(k.PublicKey(), "stable"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"key":"` + k.PublicKey().String() + `","channel":"stable","seq":1,"version":"1.0.0"}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))

	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := decodeState(k.PublicKey(), "stable", "stable.json", data)
		if err != nil {
			if !errors.Is(err, ErrState) {
				t.Fatalf("refused without ErrState: %v", err)
			}
			return
		}
		if st.Key != k.PublicKey() || st.Channel != "stable" {
			t.Fatalf("loaded the state of %s/%s", st.Key, st.Channel)
		}
		if st.Packet != nil && st.Packet.Seq != st.Seq {
			t.Fatalf("packet seq %d, accepted seq %d", st.Packet.Seq, st.Seq)
		}
		enc, err := encodeState(st)
		if err != nil {
			t.Fatal(err)
		}
		back, err := decodeState(k.PublicKey(), "stable", "stable.json", enc)
		if err != nil {
			t.Fatalf("a saved state does not load: %v\n%s", err, enc)
		}
		if back.Seq != st.Seq || back.Version.Compare(st.Version) != 0 || back.Manifest != st.Manifest || back.Infohash != st.Infohash || (back.Packet == nil) != (st.Packet == nil) {
			t.Fatalf("round trip: %+v, was %+v", back, st)
		}
	})
}
