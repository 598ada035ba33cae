package transfer

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
)

// LeftOut is a file or folder under a source folder that Make did not
// bundle, and why.
type LeftOut struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// Why Make leaves something out.
const (
	reasonKey      = "a relay private key file"
	reasonDataFile = "part of a relay data folder"
)

// dataEntries are what relay keeps at the top of a data folder (the root
// package's lock, state and DHT files, and BundlesDir), each with a test
// that it is relay's and not a user's file of the same name.
var dataEntries = map[string]func(p string, d fs.DirEntry) bool{
	"lock":  isLockFile,
	"state": hasEntry(func(n string) bool { _, err := signer.ParsePublicKey(n); return err == nil }),
	"bundles": hasEntry(func(n string) bool {
		_, err := record.ParseInfohash(n)
		return err == nil || strings.HasPrefix(n, ".make-")
	}),
	"dht-nodes":                isFile,
	"dht-nodes.self":           isFile,
	"dht-nodes-bootstrap":      isFile,
	"dht-nodes-bootstrap.self": isFile,
}

// dataFolderEntries returns the names of the entries of folder dir that
// are relay's own: dir is a relay data folder when it holds at least one.
func dataFolderEntries(dir string) map[string]bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var own map[string]bool
	for _, d := range entries {
		if is, ok := dataEntries[d.Name()]; ok && is(filepath.Join(dir, d.Name()), d) {
			if own == nil {
				own = make(map[string]bool)
			}
			own[d.Name()] = true
		}
	}
	return own
}

func isFile(_ string, d fs.DirEntry) bool { return d.Type().IsRegular() }

// isLockFile: the data folder's lock holds the process id of its holder,
// or nothing.
func isLockFile(p string, d fs.DirEntry) bool {
	if !d.Type().IsRegular() {
		return false
	}
	b, err := readHead(p, 32)
	return err == nil && len(b) < 32 && strings.Trim(string(b), "0123456789\n") == ""
}

func hasEntry(relays func(name string) bool) func(string, fs.DirEntry) bool {
	return func(p string, d fs.DirEntry) bool {
		if !d.IsDir() {
			return false
		}
		entries, _ := os.ReadDir(p)
		for _, e := range entries {
			if relays(e.Name()) {
				return true
			}
		}
		return false
	}
}

// isKeyFile reports whether the file at p holds a relay private key
// (signer.LooksLikeKeyFile), looking at its first MaxKeyFileSize bytes.
func isKeyFile(p string) (bool, error) {
	b, err := readHead(p, signer.MaxKeyFileSize)
	if err != nil {
		return false, err
	}
	return signer.LooksLikeKeyFile(b), nil
}

func readHead(p string, n int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, n))
	if err != nil {
		return nil, fmt.Errorf("failed to read %s: %w", p, err)
	}
	return b, nil
}
