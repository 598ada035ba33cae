package relay

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
)

func testKey(t testing.TB, b byte) *signer.PrivateKey {
	t.Helper()
	k, err := signer.NewPrivateKey(bytes.Repeat([]byte{b}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestStateRoundTrip(t *testing.T) {
	s := newStateStore(t.TempDir())
	k := testKey(t, 1)
	st, err := s.Load(k.PublicKey(), "stable")
	if err != nil || st.Seq != 0 || !st.Version.IsZero() || st.Key != k.PublicKey() {
		t.Fatalf("empty state: %+v %v", st, err)
	}
	r := record.Release{Channel: "stable", Version: record.MustParseVersion("1.2.3"), Infohash: record.Infohash{1}, Manifest: record.Digest{2}, Size: 9, Expires: time.Unix(2e9, 0)}
	packet, _ := record.SetRelease(k.PublicKey(), nil, r)
	p, _ := record.Sign(k, 12345, packet)
	st.Accepted = record.Accept(p, r)
	st.Infohash, st.Packet, st.Updated = r.Infohash, p, time.Unix(1e9, 0).UTC()
	if err := s.Save(st); err != nil {
		t.Fatal(err)
	}
	back, err := s.Load(k.PublicKey(), "stable")
	if err != nil {
		t.Fatal(err)
	}
	if back.Seq != 12345 || back.Version.String() != "1.2.3" || back.Manifest != r.Manifest || back.Infohash != r.Infohash || back.Packet == nil || back.Packet.Sig != p.Sig {
		t.Fatalf("state round trip: %+v", back)
	}
	all, err := s.List()
	if err != nil || len(all) != 1 || all[0].Channel != "stable" {
		t.Fatalf("List = %v, %v", all, err)
	}
}

func TestStateRefusesDamage(t *testing.T) {
	dir := t.TempDir()
	s := newStateStore(dir)
	k := testKey(t, 1)
	st := State{Key: k.PublicKey(), Channel: "stable", Accepted: record.Accepted{Seq: 5, Version: record.MustParseVersion("1.0.0")}}
	if err := s.Save(st); err != nil {
		t.Fatal(err)
	}
	path := s.path(k.PublicKey(), "stable")
	good, _ := os.ReadFile(path)
	for name, data := range map[string][]byte{
		"truncated":   good[:len(good)/2],
		"empty":       {},
		"other key":   bytes.Replace(good, []byte(k.PublicKey().String()), []byte(testKey(t, 2).PublicKey().String()), 1),
		"bad version": bytes.Replace(good, []byte(`"1.0.0"`), []byte(`"one"`), 1),
		"bad packet":  bytes.Replace(good, []byte(`"updated"`), []byte(`"packet": "00", "updated"`), 1),
	} {
		os.WriteFile(path, data, 0o644)
		if _, err := s.Load(k.PublicKey(), "stable"); !errors.Is(err, ErrState) {
			t.Errorf("%s: %v, want ErrState", name, err)
		}
	}
	os.Remove(path)
	os.Mkdir(path, 0o755) // a folder where the file should be
	if _, err := s.Load(k.PublicKey(), "stable"); !errors.Is(err, ErrState) {
		t.Errorf("folder: %v, want ErrState", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// A data dir that is a file cannot hold state.
	if err := newStateStore(filepath.Join(dir, "x")).Save(st); err == nil {
		t.Error("saved state under a file")
	}
}

// TestDataDirInUse: a second client that would write a data folder in use
// is refused with ErrDataDirInUse, and the folder is left as it was; a
// read-only client that only resolves may share it; once the first closes,
// the folder is free.
func TestDataDirInUse(t *testing.T) {
	t.Parallel()
	n := newTestNet(t)
	dir := t.TempDir()
	open := func(readOnly bool) (*Client, error) {
		return Open(ctxFor(t, 30*time.Second), Config{
			DataDir:   dir,
			Bootstrap: []string{n.net.Bootstrap.Addr().String()},
			Listen:    "127.0.0.1:0",
			ReadOnly:  readOnly,
		})
	}
	first, err := open(false)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	before := listTree(t, dir)
	if _, err := open(false); !errors.Is(err, ErrDataDirInUse) {
		t.Fatalf("a second client on the folder: %v, want ErrDataDirInUse", err)
	}
	if after := listTree(t, dir); !slices.Equal(before, after) {
		t.Errorf("the refused client changed the folder: %v, then %v", before, after)
	}
	ro, err := open(true)
	if err != nil {
		t.Fatalf("a read-only client beside it: %v", err)
	}
	// It resolves, but it may not start a torrent client there.
	if _, err := ro.PeerAddr(); !errors.Is(err, ErrDataDirInUse) {
		t.Errorf("the read-only client's torrent client: %v, want ErrDataDirInUse", err)
	}
	ro.Close()
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := open(false)
	if err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	again.Close()
}

// listTree lists the files under dir.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}
