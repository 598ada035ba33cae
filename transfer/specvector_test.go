package transfer

import (
	"bytes"
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"
	"github.com/relay-sh/relay/internal/spectest"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
)

// TestBundleVector makes the bundle of docs/spec/bundle.md from its inputs
// (two files, the key whose seed is 32 bytes of 0x01, version 1.4.2
// published 2026-11-01T00:00:00Z) and checks that the spec shows the same
// manifest, byte for byte, and the same digests, info dictionary and
// infohash: a change to how bundles are made cannot leave the spec behind.
func TestBundleVector(t *testing.T) {
	src := t.TempDir()
	files := []struct {
		name, body string
		mode       os.FileMode
	}{
		{"README.txt", "relay test vector\n", 0o644},
		{"app_linux_amd64", "#!/bin/sh\necho 1.4.2\n", 0o755},
	}
	var sources []Source
	for _, f := range files {
		p := filepath.Join(src, f.name)
		if err := os.WriteFile(p, []byte(f.body), f.mode); err != nil {
			t.Fatal(err)
		}
		sources = append(sources, Source{Path: p})
	}
	k, err := signer.NewPrivateKey(bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Make(context.Background(), MakeOptions{
		Dir:       t.TempDir(),
		Sources:   sources,
		Key:       k.PublicKey(),
		Version:   record.MustParseVersion("1.4.2"),
		Published: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
	})
	if err != nil {
		t.Fatal(err)
	}
	mi, err := metainfo.LoadFromFile(filepath.Join(filepath.Dir(b.Dir), b.Name+".torrent"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		string(b.ManifestBytes),
		b.ManifestDigest.String(),
		b.Infohash.String(),
		hex.EncodeToString(mi.InfoBytes),
		b.Magnet(),
		"n=" + strconv.FormatInt(b.Size, 10),
	}
	for _, f := range b.Manifest.Files {
		want = append(want, f.SHA256.String())
	}
	spectest.Check(t, "../docs/spec/bundle.md", want)
	t.Logf("manifest %d bytes, bundle %d bytes, info %d bytes", len(b.ManifestBytes), b.Size, len(mi.InfoBytes))
}
