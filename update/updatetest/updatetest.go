// Package updatetest serves releases of a program to its updater in the
// program's own tests, with no Internet: a private DHT and a seeder on
// 127.0.0.1, and a provider key made for the test. An updater configured
// with Server.Config runs its whole verification chain against it, as
// against the public network: the record's signature by the key it is
// given, replay, rollback and expiry, the manifest's SHA-256, every
// file's, the version rules, the health check and the install. Only the
// key differs; an updater trusts no key but Config.Key, so a program
// built with its provider's key never takes a release of this package's.
//
// It is for tests only: it must never be used to ship releases, and it
// never reaches beyond the loopback interface.
package updatetest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/dht/localnet"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/transfer"
	"github.com/relay-sh/relay/update"
)

// Nodes is the number of DHT nodes a Server runs besides its bootstrap
// node: enough for every record to be stored on several.
const Nodes = 8

// Server publishes and seeds releases of Key on a private DHT on
// 127.0.0.1.
type Server struct {
	// Key is the provider key the releases are signed with, made for the
	// server.
	Key *signer.PrivateKey

	net *localnet.Net
	pub *relay.Client
}

// Start starts a server whose publisher keeps its data in dir (made if
// missing): a private DHT of Nodes nodes, and a publisher that seeds what
// it publishes. Close stops it.
func Start(ctx context.Context, dir string) (*Server, error) {
	key, err := signer.Generate(nil)
	if err != nil {
		return nil, err
	}
	n, err := localnet.Start(ctx, localnet.Config{Nodes: Nodes})
	if err != nil {
		return nil, fmt.Errorf("updatetest: private DHT: %w", err)
	}
	pub, err := relay.Open(ctx, relay.Config{
		DataDir:   dir,
		Bootstrap: []string{n.Bootstrap.Addr().String()},
		Listen:    "127.0.0.1:0",
	})
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("updatetest: publisher: %w", err)
	}
	return &Server{Key: key, net: n, pub: pub}, nil
}

// New is Start for a test: in a folder of tb's, stopped when tb ends. It
// fails tb if the server cannot start.
func New(tb testing.TB) *Server {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// Close stops the publisher and the DHT.
func (s *Server) Close() error {
	return errors.Join(s.pub.Close(), s.net.Close())
}

// Publish publishes the files under dir, each under its path there, as
// version v (semantic versioning) of channel "stable", signed by Key, and
// seeds them. A file named for a platform (app_linux_amd64,
// app_windows_amd64.exe) is for that platform, as with relay publish.
func (s *Server) Publish(ctx context.Context, v, dir string) (record.Release, error) {
	return s.PublishWith(ctx, relay.PublishOptions{}, v, dir)
}

// PublishFiles publishes files, contents by path (app_linux_amd64, or
// Name() for the platform the test runs on), as Publish does a folder
// that holds them.
func (s *Server) PublishFiles(ctx context.Context, v string, files map[string][]byte) (record.Release, error) {
	dir, err := os.MkdirTemp("", "updatetest-release-")
	if err != nil {
		return record.Release{}, err
	}
	defer os.RemoveAll(dir) // the publisher keeps a copy in its bundle
	for name, b := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return record.Release{}, err
		}
		if err := os.WriteFile(p, b, 0o755); err != nil {
			return record.Release{}, err
		}
	}
	return s.Publish(ctx, v, dir)
}

// Name returns the name of a program's file built for the platform the
// test runs on, prefix_GOOS_GOARCH (with .exe on Windows): the file an
// updater installs from a release.
func Name(prefix string) string {
	name := prefix + "_" + runtime.GOOS + "_" + runtime.GOARCH
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	return name
}

// PublishWith is Publish with more of relay's options (a channel, notes,
// an expiry, encryption to recipients); their Key, Version and Sources
// are the server's, v and dir.
func (s *Server) PublishWith(ctx context.Context, o relay.PublishOptions, v, dir string) (record.Release, error) {
	ver, err := record.ParseVersion(v)
	if err != nil {
		return record.Release{}, err
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return record.Release{}, fmt.Errorf("updatetest: %s is not a folder of release files", dir)
	}
	o.Key, o.Version, o.Sources = s.Key, ver, []transfer.Source{{Path: filepath.Clean(dir)}}
	p, err := s.pub.Publish(ctx, o)
	if err != nil {
		return record.Release{}, err
	}
	return p.Release, nil
}

// Peer returns the address of the server's seeder: for Config.Peers, or
// to show a test that the DHT finds it anyway.
func (s *Server) Peer() (netip.AddrPort, error) {
	return s.pub.PeerAddr()
}

// Bootstrap returns the address of the server's DHT, for Config.Bootstrap.
func (s *Server) Bootstrap() string {
	return s.net.Bootstrap.Addr().String()
}

// Config returns cfg set to follow the server: its Key the server's,
// Bootstrap the server's DHT, Listen on 127.0.0.1 unless set, and no
// Relays. The rest of cfg (Version, Executable, DataDir, HealthCheck...)
// is the test's.
func (s *Server) Config(cfg update.Config) update.Config {
	cfg.Key = s.Key.PublicKey()
	cfg.Bootstrap = []string{s.Bootstrap()}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	cfg.Relays = nil
	return cfg
}
