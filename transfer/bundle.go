package transfer

import (
	"bytes"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/relay-sh/relay/internal/atomicfile"
	"github.com/relay-sh/relay/record"
)

// BundlesDir returns the folder under a data folder that holds bundles.
func BundlesDir(dataDir string) string { return filepath.Join(dataDir, "bundles") }

// BundleName returns a bundle's torrent name: "<channel>-<version>". It is
// the name of the bundle's folder and, for web seeds, the first path
// element after the seed's URL.
func BundleName(channel string, v record.Version) string { return channel + "-" + v.String() }

// stateName is the file in <root>/<infohash> recording what relay verified.
const stateName = ".relay-state"

// maxInfoSize caps the info dictionary relay accepts: 20 bytes of SHA-1 per
// piece of at least 16 KiB for a bundle of the record's size, and room for
// the file list.
func maxInfoSize(size int64) int64 { return 1<<20 + 20*(size/(16<<10)+1) }

// Bundle is a bundle on disk: a torrent whose root folder holds relay.json
// and the released files.
type Bundle struct {
	// Infohash is the torrent's BitTorrent v1 infohash (the record's bt).
	Infohash record.Infohash
	// Name is the torrent's name, BundleName of the manifest's channel and
	// version for bundles relay makes.
	Name string
	// Dir is the bundle's folder: relay.json and the files under their
	// manifest paths.
	Dir string
	// Manifest is the decoded relay.json; ManifestBytes its exact bytes,
	// whose SHA-256 is ManifestDigest (the record's m).
	Manifest       *record.Manifest
	ManifestBytes  []byte
	ManifestDigest record.Digest
	// Size is the torrent's total length: every file and relay.json (the
	// record's n).
	Size int64
	// PieceLength is the torrent's piece length in bytes.
	PieceLength int64
}

// Magnet returns the bundle's magnet link, magnet:?xt=urn:btih:<infohash>&dn=<name>,
// which any BitTorrent client can fetch it with.
func (b *Bundle) Magnet() string { return Magnet(b.Infohash, b.Name) }

// Magnet returns the magnet link of a bundle: its infohash and, if name is
// not empty, its display name.
func Magnet(ih record.Infohash, name string) string {
	s := "magnet:?xt=urn:btih:" + ih.String()
	if name != "" {
		s += "&dn=" + url.QueryEscape(name)
	}
	return s
}

// Release returns the release record that names this bundle, expiring at
// expires and listing webSeeds.
func (b *Bundle) Release(expires time.Time, webSeeds ...string) record.Release {
	return record.Release{
		Channel:  b.Manifest.Channel,
		Version:  b.Manifest.Version,
		Infohash: b.Infohash,
		Manifest: b.ManifestDigest,
		Size:     b.Size,
		Expires:  expires,
		WebSeeds: webSeeds,
	}
}

// OpenBundle reads the bundle with infohash ih under root (BundlesDir):
// its metainfo, which must hash to ih, and its relay.json. It does not
// check the files' data; Client.Seed does.
func OpenBundle(root string, ih record.Infohash) (*Bundle, error) {
	dir := filepath.Join(root, ih.String())
	info, _, err := loadMetainfo(dir, ih)
	if err != nil {
		return nil, err
	}
	b := &Bundle{
		Infohash:    ih,
		Name:        info.Name,
		Dir:         filepath.Join(dir, info.Name),
		Size:        info.TotalLength(),
		PieceLength: info.PieceLength,
	}
	mb, err := readManifestFile(filepath.Join(b.Dir, record.ManifestName))
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", ih, err)
	}
	m, err := record.DecodeManifest(mb)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", ih, err)
	}
	b.Manifest, b.ManifestBytes, b.ManifestDigest = m, mb, record.SHA256(mb)
	return b, nil
}

// ListBundles returns the infohashes of the bundles under root
// (BundlesDir): every folder named by an infohash that holds a metainfo.
func ListBundles(root string) ([]record.Infohash, error) {
	ihs, err := BundleDirs(root)
	var out []record.Infohash
	for _, ih := range ihs {
		if _, err := findMetainfo(filepath.Join(root, ih.String())); err == nil {
			out = append(out, ih)
		}
	}
	return out, err
}

// BundleDirs returns the infohashes of the folders under root
// (BundlesDir), whole bundles or not (a download that has not got its
// metainfo yet).
func BundleDirs(root string) ([]record.Infohash, error) {
	entries, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to list bundles: %w", err)
	}
	var out []record.Infohash
	for _, e := range entries {
		ih, err := record.ParseInfohash(e.Name())
		if err == nil && e.IsDir() && ih.String() == e.Name() {
			out = append(out, ih)
		}
	}
	return out, nil
}

func readManifestFile(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("failed to read manifest: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, record.MaxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("failed to read manifest: %w", err)
	}
	if len(b) > record.MaxManifestSize {
		return nil, fmt.Errorf("%w: manifest is over %d bytes", record.ErrMalformed, record.MaxManifestSize)
	}
	return b, nil
}

// findMetainfo returns the path of the one .torrent file in dir.
func findMetainfo(dir string) (string, error) {
	matches, err := filepath.Glob(filepath.Join(dir, "*.torrent"))
	if err != nil {
		return "", err
	}
	if len(matches) != 1 {
		return "", fmt.Errorf("%s holds %d metainfo files, want 1: %w", dir, len(matches), os.ErrNotExist)
	}
	return matches[0], nil
}

// loadMetainfo reads the metainfo in dir and checks that it hashes to ih
// and describes a bundle.
func loadMetainfo(dir string, ih record.Infohash) (*metainfo.Info, []byte, error) {
	p, err := findMetainfo(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("bundle %s: %w", ih, err)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, nil, fmt.Errorf("bundle %s: %w", ih, err)
	}
	defer f.Close()
	mi, err := metainfo.Load(io.LimitReader(f, 64<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("bundle %s: bad metainfo %s: %w", ih, p, err)
	}
	info, err := parseInfo(mi.InfoBytes, ih)
	if err != nil {
		return nil, nil, fmt.Errorf("bundle %s: %w", ih, err)
	}
	if want := info.Name + ".torrent"; filepath.Base(p) != want {
		return nil, nil, fmt.Errorf("bundle %s: metainfo is %s, want %s", ih, filepath.Base(p), want)
	}
	return info, mi.InfoBytes, nil
}

// parseInfo decodes info bytes that must hash to ih and checks them.
func parseInfo(b []byte, ih record.Infohash) (*metainfo.Info, error) {
	if record.Infohash(sha1.Sum(b)) != ih {
		return nil, fmt.Errorf("info dictionary does not hash to %s", ih)
	}
	var info metainfo.Info
	if err := bencode.Unmarshal(b, &info); err != nil {
		return nil, fmt.Errorf("bad info dictionary: %w", err)
	}
	if err := checkInfo(&info); err != nil {
		return nil, err
	}
	return &info, nil
}

// checkInfo checks that info describes a bundle relay can store: a v1
// multi-file torrent with a safe name, clean relative paths, no empty
// file, no padding, symlink or executable attributes, and relay.json at
// its root.
func checkInfo(info *metainfo.Info) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: torrent %s", record.ErrManifestMismatch, fmt.Sprintf(format, a...))
	}
	if info.HasV2() || info.Length != 0 || len(info.Files) == 0 {
		return bad("is not a v1 multi-file torrent")
	}
	if n := info.Name; n == "" || n == "." || n == ".." || strings.ContainsAny(n, "/\\\x00") || strings.HasPrefix(n, ".") {
		return bad("has name %q, not a folder name", clip(n))
	}
	if info.PieceLength <= 0 || info.PieceLength > 256<<20 {
		return bad("has piece length %d", info.PieceLength)
	}
	if info.Attr != "" || len(info.SymlinkPath) != 0 || info.NameUtf8 != "" {
		return bad("has attributes relay does not use")
	}
	if want := (info.TotalLength() + info.PieceLength - 1) / info.PieceLength; int64(info.NumPieces()) != want || len(info.Pieces)%20 != 0 {
		return bad("has %d pieces for %d bytes", info.NumPieces(), info.TotalLength())
	}
	seen := make(map[string]bool, len(info.Files))
	manifest := false
	for _, f := range info.Files {
		p := strings.Join(f.Path, "/")
		if f.Attr != "" || len(f.SymlinkPath) != 0 || len(f.PathUtf8) != 0 {
			return bad("file %q has attributes relay does not use", clip(p))
		}
		if f.Length <= 0 || !cleanPath(f.Path) {
			return bad("file %q is not a clean relative path", clip(p))
		}
		if seen[p] {
			return bad("lists %q twice", clip(p))
		}
		seen[p] = true
		if p == record.ManifestName {
			manifest = true
			if f.Length == 0 || f.Length > record.MaxManifestSize {
				return bad("has a manifest of %d bytes", f.Length)
			}
		}
	}
	if !manifest {
		return bad("has no %s", record.ManifestName)
	}
	return nil
}

func cleanPath(parts []string) bool {
	if len(parts) == 0 {
		return false
	}
	for _, p := range parts {
		if p == "" || p == "." || p == ".." || strings.ContainsAny(p, "/\\\x00") {
			return false
		}
	}
	p := strings.Join(parts, "/")
	return path.Clean(p) == p && !strings.HasPrefix(p, ".relay")
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

// writeMetainfo writes the metainfo of infoBytes (the info dictionary and
// nothing else, so that it is the same wherever it is made) to
// dir/<name>.torrent, atomically.
func writeMetainfo(dir, name string, infoBytes []byte) error {
	var buf bytes.Buffer
	if err := (&metainfo.MetaInfo{InfoBytes: infoBytes}).Write(&buf); err != nil {
		return fmt.Errorf("failed to encode metainfo: %w", err)
	}
	return atomicfile.WriteFile(filepath.Join(dir, name+".torrent"), buf.Bytes(), 0o600)
}
