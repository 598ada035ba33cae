package transfer

import (
	"cmp"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/relay-sh/relay/internal/atomicfile"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
)

// MakeOptions says what goes into a bundle. The same options and the same
// file contents give the same bundle byte for byte, and the same infohash,
// whatever the order of Sources or the files' times.
type MakeOptions struct {
	// Dir is the root folder of bundles (BundlesDir of a data folder); the
	// bundle is made in Dir/<infohash>. Required.
	Dir string
	// Sources are the files and folders to release. A file goes to the
	// bundle's root under its own name; a folder's contents go to the
	// bundle's root with their paths inside the folder (as "cp -r dir/.").
	// Symbolic links to files are followed; any other kind of file is
	// refused, and so is a path that two sources would fill.
	Sources []Source
	// Key is the publisher's key, recorded in the manifest. Required.
	Key signer.PublicKey
	// Channel is the release channel; empty means "stable".
	Channel string
	// Version is the release's version. Required.
	Version record.Version
	// Published is the time of publication recorded in the manifest (to
	// the second). The caller passes it so that the bundle can be made
	// again identically; the zero time is recorded as it is.
	Published time.Time
	// Notes are the release notes recorded in the manifest.
	Notes string
	// LeftOut, if not nil, is called for each file or folder under a
	// source folder that Make does not bundle: relay private key files
	// and relay data folders' own entries (see collect).
	LeftOut func(LeftOut)
	// Encrypted, when set, makes the manifest that of an encrypted release
	// (record.ManifestFormatEncrypted): Sources are then the ciphertexts
	// and Notes should be empty (the sealed manifest holds them).
	Encrypted *record.Encrypted
	// PieceLength is the torrent's piece length, a power of two of at
	// least 16 KiB; zero chooses one from the bundle's size (64 KiB up to
	// 16 MiB, 256 KiB up to 64 MiB, then 1 MiB or more so that there are
	// at most 2048 pieces, up to 16 MiB).
	PieceLength int64
}

// Source is a file or folder to release.
type Source struct {
	// Path is a file or folder on disk.
	Path string
	// OS and Arch, when OS is set, are the platform (in Go's names) of every
	// file from Path, instead of the one RecognisePlatform finds in each
	// file's path. Arch may be empty: for every architecture of OS.
	OS, Arch string
	// AnyPlatform marks every file from Path as for every platform,
	// whatever its name.
	AnyPlatform bool
}

// DefaultChannel is the channel of a bundle made with no channel.
const DefaultChannel = "stable"

// ChoosePieceLength returns the piece length Make uses for a bundle of
// size bytes. Small pieces spread through a swarm faster: a piece can be
// passed on only once it is whole, and a seed serving many peers at once
// completes a small piece for each of them sooner (BenchmarkSwarm16: the
// seed sent 1.5 copies of a 32 MiB bundle with 256 KiB pieces, 1.1 with
// 64 KiB, see capSeeds). Big pieces move data faster between two fast
// peers (on loopback, 250 MB/s with 128 KiB pieces, 350 MB/s with 1 MiB),
// which matters most for big bundles: 64 KiB up to 64 MiB, 256 KiB up to
// 512 MiB, then 1 MiB or more, at most 2048 pieces up to 16 MiB pieces.
func ChoosePieceLength(size int64) int64 {
	switch {
	case size <= 64<<20:
		return 64 << 10
	case size <= 512<<20:
		return 256 << 10
	}
	pl := int64(1 << 20)
	for pl < 16<<20 && size > 2048*pl {
		pl *= 2
	}
	return pl
}

// entry is one file to copy into a bundle.
type entry struct {
	src  string
	file record.File
}

// Make builds a bundle: it copies the files into Dir/<infohash>/<name>,
// hashing them as it copies (SHA-256 for the manifest, SHA-1 for the
// pieces, in one pass), writes relay.json and the metainfo, and records
// every piece as verified so that seeding starts without hashing again.
//
// Empty files are listed in the manifest but not in the torrent, which
// has no data for them (and whose file storage fails on them); Fetch
// creates them.
//
// File modes are normalised as git does, so that the same files give the
// same bundle on any machine: 0755 for a file with an execute bit, 0644
// otherwise. The torrent lists the files for every platform first, then
// each platform's files together (by os, arch, path), then relay.json,
// so that fetching one platform's files touches few pieces of another's.
//
// If the bundle is there already, Make checks its metainfo and returns it.
func Make(ctx context.Context, o MakeOptions) (*Bundle, error) {
	if o.Dir == "" {
		return nil, errors.New("make bundle: no bundles folder")
	}
	channel := cmp.Or(o.Channel, DefaultChannel)
	if o.PieceLength != 0 && (o.PieceLength < 16<<10 || o.PieceLength&(o.PieceLength-1) != 0) {
		return nil, fmt.Errorf("make bundle: piece length %d is not a power of two of at least 16 KiB", o.PieceLength)
	}
	leftOut := o.LeftOut
	if leftOut == nil {
		leftOut = func(LeftOut) {}
	}
	entries, err := collect(o.Sources, leftOut)
	if err != nil {
		return nil, fmt.Errorf("make bundle: %w", err)
	}
	m := &record.Manifest{
		Format: record.ManifestFormat, Key: o.Key, Channel: channel, Version: o.Version,
		Published: o.Published, Notes: o.Notes,
	}
	if o.Encrypted != nil {
		m.Format, m.Encrypted = record.ManifestFormatEncrypted, o.Encrypted
	}
	var total int64
	for _, e := range entries {
		m.Files = append(m.Files, e.file)
		total += e.file.Size
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("make bundle: %w", err)
	}
	name := BundleName(channel, o.Version)
	pieceLen := cmp.Or(o.PieceLength, ChoosePieceLength(total))

	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("make bundle: %w", err)
	}
	tmp, err := os.MkdirTemp(o.Dir, ".make-")
	if err != nil {
		return nil, fmt.Errorf("make bundle: %w", err)
	}
	defer os.RemoveAll(tmp)
	bundleDir := filepath.Join(tmp, name)

	ph := newPieceHasher(pieceLen)
	info := &metainfo.Info{Name: name, PieceLength: pieceLen}
	buf := make([]byte, 1<<20)
	share := sharable(o.Dir)
	for i := range entries {
		e := &entries[i]
		like := share[shareKey{e.file.Path, e.file.Size, e.file.Mode}]
		digest, err := copyFile(ctx, e, filepath.Join(bundleDir, filepath.FromSlash(e.file.Path)), like, ph, buf)
		if err != nil {
			return nil, fmt.Errorf("make bundle: %w", err)
		}
		e.file.SHA256 = digest
		m.Files[i].SHA256 = digest
		if e.file.Size > 0 {
			info.Files = append(info.Files, metainfo.FileInfo{Length: e.file.Size, Path: strings.Split(e.file.Path, "/")})
		}
	}
	mb, err := m.Encode()
	if err != nil {
		return nil, fmt.Errorf("make bundle: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(bundleDir, record.ManifestName), mb, 0o644); err != nil {
		return nil, fmt.Errorf("make bundle: %w", err)
	}
	ph.Write(mb)
	info.Files = append(info.Files, metainfo.FileInfo{Length: int64(len(mb)), Path: []string{record.ManifestName}})
	info.Pieces = ph.Sum()
	infoBytes, err := bencode.Marshal(info)
	if err != nil {
		return nil, fmt.Errorf("make bundle: failed to encode info: %w", err)
	}
	ih := record.Infohash(sha1.Sum(infoBytes))
	if err := writeMetainfo(tmp, name, infoBytes); err != nil {
		return nil, fmt.Errorf("make bundle: %w", err)
	}
	files := spans(tmp, info)
	complete := make([]bool, info.NumPieces())
	checked := make([]bool, len(files))
	for i := range complete {
		complete[i] = true
	}
	for j := range checked {
		checked[j] = true
	}
	if err := writeState(tmp, ih, files, complete, checked); err != nil {
		return nil, fmt.Errorf("make bundle: %w", err)
	}
	final := filepath.Join(o.Dir, ih.String())
	if err := os.Rename(tmp, final); err != nil {
		// The same bundle was made before (or is being made alongside):
		// use it if its metainfo is sound.
		if b, oerr := OpenBundle(o.Dir, ih); oerr == nil {
			return b, nil
		}
		return nil, fmt.Errorf("make bundle: %w", err)
	}
	atomicfile.SyncDir(o.Dir)
	canonical, err := record.DecodeManifest(mb)
	if err != nil {
		return nil, fmt.Errorf("make bundle: %w", err)
	}
	return &Bundle{
		Infohash: ih, Name: name, Dir: filepath.Join(final, name),
		Manifest: canonical, ManifestBytes: mb, ManifestDigest: record.SHA256(mb),
		Size: info.TotalLength(), PieceLength: pieceLen,
	}, nil
}

// collect lists the files of the sources, with their bundle paths, sizes,
// modes and platforms, in torrent order.
//
// It leaves out, and passes to leftOut, every file under a source folder
// that holds a relay private key (whatever its name) and relay's own
// entries of every data folder there (its lock, state, DHT files and
// bundles): a publisher who runs `relay publish .` where its key or data
// folder is must not release them. A key file named as a source is an
// error.
func collect(sources []Source, leftOut func(LeftOut)) ([]entry, error) {
	if len(sources) == 0 {
		return nil, errors.New("no files to bundle")
	}
	var out []entry
	from := make(map[string]string)
	add := func(src, rel string, st fs.FileInfo, s Source) error {
		if prev, ok := from[rel]; ok {
			return fmt.Errorf("%s and %s would both be %q in the bundle", prev, src, rel)
		}
		from[rel] = src
		if err := record.ValidPath(rel); err != nil {
			// Bad input, not a failed verification: %v drops the sentinel.
			return fmt.Errorf("%q cannot be released: %v", src, err)
		}
		mode := record.Mode(0o644)
		if st.Mode().Perm()&0o111 != 0 {
			mode = 0o755
		}
		f := record.File{Path: rel, Size: st.Size(), Mode: mode}
		switch {
		case s.AnyPlatform:
		case s.OS != "":
			f.OS, f.Arch = s.OS, s.Arch
		default:
			f.OS, f.Arch, _ = RecognisePlatform(rel)
		}
		out = append(out, entry{src: src, file: f})
		return nil
	}
	for _, s := range sources {
		st, err := os.Stat(s.Path)
		if err != nil {
			return nil, err
		}
		switch {
		case st.Mode().IsRegular():
			if key, err := isKeyFile(s.Path); err != nil || key {
				return nil, cmp.Or(err, fmt.Errorf("%q is %s: relay never publishes one", s.Path, reasonKey))
			}
			if err := add(s.Path, filepath.Base(s.Path), st, s); err != nil {
				return nil, err
			}
		case st.IsDir():
			// relay's own entries of each data folder met on the way.
			own := make(map[string]map[string]bool)
			err := filepath.WalkDir(s.Path, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if own[filepath.Dir(p)][d.Name()] && p != s.Path {
					leftOut(LeftOut{Path: p, Reason: reasonDataFile})
					if d.IsDir() {
						return fs.SkipDir
					}
					return nil
				}
				if d.IsDir() {
					own[p] = dataFolderEntries(p)
					return nil
				}
				st, err := os.Stat(p) // follows a link to a file
				if err != nil {
					return err
				}
				if !st.Mode().IsRegular() {
					return fmt.Errorf("%s is not a regular file", p)
				}
				if key, err := isKeyFile(p); err != nil || key {
					if key {
						leftOut(LeftOut{Path: p, Reason: reasonKey})
					}
					return err
				}
				rel, err := filepath.Rel(s.Path, p)
				if err != nil {
					return err
				}
				return add(p, filepath.ToSlash(rel), st, s)
			})
			if err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("%s is not a regular file or folder", s.Path)
		}
	}
	slices.SortFunc(out, func(a, b entry) int { return compareFiles(a.file, b.file) })
	return out, nil
}

// compareFiles orders a bundle's files in its torrent: files for every
// platform first, then by os, arch and path.
func compareFiles(a, b record.File) int {
	ap, bp := a.OS != "" || a.Arch != "", b.OS != "" || b.Arch != ""
	switch {
	case !ap && bp:
		return -1
	case ap && !bp:
		return 1
	}
	return cmp.Or(strings.Compare(a.OS, b.OS), strings.Compare(a.Arch, b.Arch), strings.Compare(a.Path, b.Path))
}

// copyFile copies e into dst, feeding the piece hasher, and returns the
// file's SHA-256. The copy must have the size the file had when listed.
// like are files of other bundles that dst may be a hard link to, if
// their bytes are the same (see share.go).
func copyFile(ctx context.Context, e *entry, dst string, like []string, ph *pieceHasher, buf []byte) (record.Digest, error) {
	var d record.Digest
	in, err := os.Open(e.src)
	if err != nil {
		return d, err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return d, err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return d, err
	}
	defer out.Close()
	w := &sharingWriter{out: out}
	for _, p := range like {
		if f, err := os.Open(p); err == nil && e.file.Size > 0 {
			w.like = append(w.like, f)
			defer f.Close()
		}
	}
	h := sha256.New()
	n, err := io.CopyBuffer(io.MultiWriter(w, h, ph), &ctxReader{ctx, in}, buf)
	if err != nil {
		return d, fmt.Errorf("failed to copy %s: %w", e.src, err)
	}
	if n != e.file.Size {
		return d, fmt.Errorf("%s changed while it was copied (%d bytes, then %d)", e.src, e.file.Size, n)
	}
	copy(d[:], h.Sum(nil))
	if f := w.shared(n); f != nil {
		linked, err := linkInPlace(f.Name(), dst)
		if err != nil {
			return d, fmt.Errorf("failed to copy %s: %w", e.src, err)
		}
		if linked {
			return d, nil
		}
	} else if err := w.diverge(); err != nil {
		return d, fmt.Errorf("failed to copy %s: %w", e.src, err)
	}
	if err := out.Sync(); err != nil {
		return d, err
	}
	if err := out.Close(); err != nil {
		return d, err
	}
	if err := os.Chmod(dst, fs.FileMode(e.file.Mode)); err != nil {
		return d, err
	}
	return d, nil
}

// ctxReader stops a copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// pieceHasher computes a torrent's piece hashes over the stream of its
// files' data.
type pieceHasher struct {
	pieceLen int64
	n        int64
	h        hash.Hash
	sums     []byte
}

func newPieceHasher(pieceLen int64) *pieceHasher {
	return &pieceHasher{pieceLen: pieceLen, h: sha1.New()}
}

func (p *pieceHasher) Write(b []byte) (int, error) {
	total := len(b)
	for len(b) > 0 {
		k := min(int64(len(b)), p.pieceLen-p.n)
		p.h.Write(b[:k])
		p.n += k
		b = b[k:]
		if p.n == p.pieceLen {
			p.sums = p.h.Sum(p.sums)
			p.h.Reset()
			p.n = 0
		}
	}
	return total, nil
}

// Sum returns the hashes of every piece, the last one possibly short.
func (p *pieceHasher) Sum() []byte {
	if p.n > 0 {
		p.sums = p.h.Sum(p.sums)
		p.h.Reset()
		p.n = 0
	}
	return p.sums
}
