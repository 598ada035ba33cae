package main

import (
	"bytes"
	"crypto/sha1"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/transfer"
	"github.com/rogpeppe/go-internal/testscript"
)

// cmdHostileRelease: hostilerelease KEYFILE VERSION MODE NAME... publishes a
// release that `relay publish` would never make, as a hostile or broken
// publisher could: a bundle whose manifest lists the files NAME (Go
// quoted strings are unquoted, so "x\n/etc/passwd" is a name with a
// newline), each holding "NAME VERSION\n" and given the octal MODE, served by a web
// seed in this process (BEP 19, Go's file server), and a record for it
// signed by KEYFILE and stored into the network at $BOOTSTRAP. The bundle
// is consistent (its hashes match), so only relay's own checks of the
// manifest can refuse it.
func cmdHostileRelease(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 4 || neg {
		ts.Fatalf("usage: hostilerelease KEYFILE VERSION MODE NAME...")
	}
	k, err := signer.ReadKeyFile(ts.MkAbs(args[0]), nil)
	ts.Check(err)
	version := record.MustParseVersion(args[1])
	mode, err := strconv.ParseUint(args[2], 8, 32)
	ts.Check(err)
	name := transfer.BundleName("stable", version)
	root := ts.MkAbs("hostile-" + args[1])
	dir := filepath.Join(root, name)
	m := record.Manifest{
		Format: record.ManifestFormat, Key: k.PublicKey(), Channel: "stable", Version: version,
		Published: time.Now().UTC().Truncate(time.Second),
	}
	for _, n := range args[3:] {
		if strings.HasPrefix(n, `"`) {
			n, err = strconv.Unquote(n)
			ts.Check(err)
		}
		data := []byte(n + " " + args[1] + "\n")
		p := filepath.Join(dir, filepath.FromSlash(n))
		ts.Check(os.MkdirAll(filepath.Dir(p), 0o755))
		ts.Check(os.WriteFile(p, data, 0o644))
		m.Files = append(m.Files, record.File{Path: n, Size: int64(len(data)), SHA256: record.SHA256(data), Mode: record.Mode(mode)})
	}
	mb, err := json.MarshalIndent(&m, "", "  ")
	ts.Check(err)
	ts.Check(os.WriteFile(filepath.Join(dir, record.ManifestName), mb, 0o644))
	info := metainfo.Info{PieceLength: 64 << 10}
	ts.Check(info.BuildFromFilePath(dir))
	infoBytes, err := bencode.Marshal(info)
	ts.Check(err)
	var mi bytes.Buffer
	ts.Check((&metainfo.MetaInfo{InfoBytes: infoBytes}).Write(&mi))
	ts.Check(os.WriteFile(filepath.Join(root, name+".torrent"), mi.Bytes(), 0o644))

	srv := httptest.NewServer(http.FileServer(http.Dir(root)))
	ts.Defer(srv.Close)
	r := record.Release{
		Channel:  "stable",
		Version:  version,
		Infohash: record.Infohash(sha1.Sum(infoBytes)),
		Manifest: record.SHA256(mb),
		Size:     info.TotalLength(),
		Expires:  time.Now().Add(time.Hour).UTC().Truncate(time.Second),
		WebSeeds: []string{srv.URL + "/"},
	}
	storeRelease(ts, k, r)
	ts.Logf("served at %s", srv.URL)
}
