package update_test

// End-to-end tests: the example program, built at 1.0.0 and 2.0.0 with
// -ldflags -X, runs as a process on the local DHT and updates itself.

import (
	"bytes"
	"crypto/sha1"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/relay-sh/relay/dht"
	"github.com/relay-sh/relay/dht/localnet"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/transfer"
)

// TestSelfUpdate: version 1.0.0 is running when 2.0.0 is published; it
// finds it, verifies it, passes its health check, replaces its own
// executable (same path, same mode, nothing left beside it) and execs
// it: the same process reports 2.0.0 with its arguments intact.
func TestSelfUpdate(t *testing.T) {
	t.Parallel()
	v1, v2 := example(t, "1.0.0"), example(t, "2.0.0")
	key := newKey(t)
	pub := publisher(t)
	p := startProgram(t, v1, key.PublicKey(), bootstrap(t), true)
	p.started("1.0.0", 30*time.Second)
	p.waitLine(true, 30*time.Second, "nothing published on this channel yet")

	publish(t, pub, key, "2.0.0", v2)
	p.waitLine(true, 30*time.Second, "installed a new release", "version=2.0.0")
	p.waitLine(false, 10*time.Second, "updated to 2.0.0; restarting")
	p.started("2.0.0", 30*time.Second)
	p.running()
	sameFile(t, p.path, v2)
	if fi, err := os.Stat(p.path); err != nil || fi.Mode().Perm() != 0o750 {
		t.Fatalf("the executable's mode is %v (%v), want 0750 kept", fi.Mode(), err)
	}
	onlyFile(t, filepath.Dir(p.path), "selfupdate")
}

// TestSelfUpdateRefused: four bad 2.0.0 releases, and each time 1.0.0
// stays in place and running, with the reason in its log:
//   - a packet for the trusted key signed by another key, from a DHT node
//     that answers with it (the only way it could reach the program:
//     honest nodes refuse to store it);
//   - a release whose manifest gives the executable a wrong SHA-256 (the
//     torrent itself is consistent: only relay's file check catches it);
//   - a release lower than the running version;
//   - a release whose new executable fails its health check.
func TestSelfUpdateRefused(t *testing.T) {
	t.Parallel()
	v1, v2 := example(t, "1.0.0"), example(t, "2.0.0")
	for _, tc := range []struct {
		name string
		// publish publishes the bad release and returns the program's
		// bootstrap list and extra environment.
		publish     func(t *testing.T, key *signer.PrivateKey) (bootstrap string, env []string)
		healthCheck bool
		reason      []string
	}{
		{
			name: "signed by another key",
			publish: func(t *testing.T, key *signer.PrivateKey) (string, []string) {
				// The genuine record is 1.0.0, which the program runs.
				genuine := publish(t, publisher(t), key, "1.0.0", writeFile(t, t.TempDir(), platformName, "1.0.0", 0o755))
				fake := forgedNode(t, key.PublicKey(), genuine.Packet, "2.0.0")
				return fake + "," + bootstrap(t), nil
			},
			reason: []string{"level=WARN", "ignored DHT answers that failed verification", "answers=1"},
		},
		{
			name: "wrong file hash",
			publish: func(t *testing.T, key *signer.PrivateKey) (string, []string) {
				publishLyingManifest(t, key, "2.0.0", v2)
				return bootstrap(t), nil
			},
			reason: []string{"level=WARN", "refused a release", "file does not match manifest", platformName},
		},
		{
			name: "lower version",
			publish: func(t *testing.T, key *signer.PrivateKey) (string, []string) {
				publish(t, publisher(t), key, "0.9.0", writeFile(t, t.TempDir(), platformName, "0.9.0", 0o755))
				return bootstrap(t), nil
			},
			reason: []string{"level=WARN", "refused a release", "version lower than the one accepted", "record has 0.9.0, 1.0.0 was accepted"},
		},
		{
			name: "failed health check",
			publish: func(t *testing.T, key *signer.PrivateKey) (string, []string) {
				publish(t, publisher(t), key, "2.0.0", v2)
				return bootstrap(t), []string{"SELFUPDATE_UNHEALTHY=1"}
			},
			healthCheck: true,
			reason:      []string{"level=WARN", "refused a release", "new executable failed its health check", "exit status 1", "SELFUPDATE_UNHEALTHY is set"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			key := newKey(t)
			boot, env := tc.publish(t, key)
			p := startProgram(t, v1, key.PublicKey(), boot, tc.healthCheck, env...)
			p.started("1.0.0", 90*time.Second)
			i := p.waitLine(true, 90*time.Second, tc.reason...)
			t.Logf("refused: %s", p.lines(true)[i])
			// A few more checks go by, and nothing changes.
			time.Sleep(time.Second)
			p.running()
			if out := p.lines(false); len(out) != 2 {
				t.Fatalf("the program wrote %q, want only its start", out)
			}
			sameFile(t, p.path, v1)
			onlyFile(t, filepath.Dir(p.path), "selfupdate")
		})
	}
}

// forgedNode starts a DHT node on 127.0.0.1 that answers every get with
// a packet for key holding release version v, signed by another key, with
// a seq above genuine's, and names no other node. Its ID is next to the
// key's target, so that any lookup of the key asks it. It returns its
// address.
func forgedNode(t *testing.T, key signer.PublicKey, genuine *record.SignedPacket, v string) string {
	t.Helper()
	r := record.Release{
		Channel:  "stable",
		Version:  record.MustParseVersion(v),
		Infohash: record.Infohash{1, 2, 3},
		Manifest: record.SHA256([]byte("forged")),
		Size:     1 << 20,
		Expires:  time.Now().Add(time.Hour).Truncate(time.Second),
	}
	packet, err := record.SetRelease(key, genuine.Packet, r)
	if err != nil {
		t.Fatal(err)
	}
	seq := genuine.Seq + 1000
	forged, err := record.Sign(newKey(t), seq, packet)
	if err != nil {
		t.Fatal(err)
	}
	item := krpc.Bep44Return{V: bencode.Bytes(strconv.Itoa(len(packet)) + ":" + string(packet)), K: key, Sig: forged.Sig, Seq: &seq}
	id := krpc.ID(record.Target(key))
	id[19] ^= 1

	return localnet.ItemNode(t, id, item)
}

// publishLyingManifest publishes version v of key as a bundle that holds
// the file bin under platformName and a manifest that gives it a wrong
// SHA-256 (its right size), and seeds it. Such a bundle is a consistent
// torrent, so the BitTorrent layer accepts its data; relay must not.
func publishLyingManifest(t *testing.T, key *signer.PrivateKey, v, bin string) {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	version := record.MustParseVersion(v)
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	name := transfer.BundleName("stable", version)
	dir := filepath.Join(t.TempDir(), name)
	writeFile(t, dir, platformName, string(data), 0o755)
	m := record.Manifest{
		Format:    record.ManifestFormat,
		Key:       key.PublicKey(),
		Channel:   "stable",
		Version:   version,
		Published: time.Now().UTC().Truncate(time.Second),
		Files: []record.File{{
			Path:   platformName,
			Size:   int64(len(data)),
			SHA256: record.SHA256(append(bytes.Clone(data), "not this"...)),
			Mode:   0o755,
			OS:     runtime.GOOS,
			Arch:   runtime.GOARCH,
		}},
	}
	enc, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, record.ManifestName, string(enc), 0o644)
	info := metainfo.Info{PieceLength: 256 << 10}
	if err := info.BuildFromFilePath(dir); err != nil {
		t.Fatal(err)
	}
	infoBytes, err := bencode.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	ih := record.Infohash(sha1.Sum(infoBytes))
	dataDir := t.TempDir()
	root := filepath.Join(transfer.BundlesDir(dataDir), ih.String())
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dir, filepath.Join(root, name)); err != nil {
		t.Fatal(err)
	}
	var mi bytes.Buffer
	if err := (&metainfo.MetaInfo{InfoBytes: infoBytes}).Write(&mi); err != nil {
		t.Fatal(err)
	}
	writeFile(t, root, name+".torrent", mi.String(), 0o644)
	b, err := transfer.OpenBundle(transfer.BundlesDir(dataDir), ih)
	if err != nil {
		t.Fatal(err)
	}

	node, err := network(t).Add(ctx, func(c *dht.Config) { c.ReadOnly = true })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	tc, err := transfer.NewClient(transfer.Config{DataDir: dataDir, Listen: "127.0.0.1:0", DHT: node, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	if _, err := tc.Seed(ctx, ih); err != nil {
		t.Fatal(err)
	}
	r := b.Release(time.Now().Add(time.Hour).UTC().Truncate(time.Second))
	if _, _, err := node.Publish(ctx, key, record.ReleaseUpdate(key.PublicKey(), r)); err != nil {
		t.Fatal(err)
	}
}
