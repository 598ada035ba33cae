// Command floor is the least an update that fetches without the torrent
// library's client would link: relay's DHT node (resolve a key, find and
// announce peers of an infohash), an HTTP relay lookup, an age decryption
// and relay's own BitTorrent peer (internal/peerwire: the info from peers,
// a download, serving what it has).
// internal/sizecheck measures it beside embed, to show what a lean fetch
// path could save and what it could not.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"

	"filippo.io/age"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/relay-sh/relay/dht"
	"github.com/relay-sh/relay/httprelay"
	"github.com/relay-sh/relay/internal/peerwire"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
)

func main() {
	if err := run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	key, err := signer.ParsePublicKey(os.Getenv("HELLO_KEY"))
	if err != nil {
		return err
	}
	n, err := dht.New(ctx, dht.Config{})
	if err != nil {
		return err
	}
	defer n.Close()
	p, _, err := n.Resolve(ctx, key)
	if err != nil {
		return err
	}
	fmt.Println(p)
	var ih record.Infohash
	peers, err := n.Peers(ctx, ih)
	if err != nil {
		return err
	}
	fmt.Println(peers, n.Announce(ctx, ih, 6881))
	hc, err := httprelay.NewClient(httprelay.ClientConfig{})
	if err != nil {
		return err
	}
	fmt.Println(hc.Get(ctx, key))
	id, err := age.ParseX25519Identity(os.Getenv("HELLO_IDENTITY"))
	if err != nil {
		return err
	}
	r, err := age.Decrypt(os.Stdin, id)
	if err != nil {
		return err
	}
	if _, err := io.Copy(os.Stdout, r); err != nil {
		return err
	}
	pw := peerwire.New(peerwire.Config{})
	infoBytes, err := pw.FetchInfo(ctx, metainfo.Hash(ih), []string{os.Getenv("HELLO_PEER")}, nil)
	if err != nil {
		return err
	}
	info, err := peerwire.ParseInfo(infoBytes)
	if err != nil {
		return err
	}
	files, err := peerwire.CreateFiles(os.TempDir(), info)
	if err != nil {
		return err
	}
	defer files.Close()
	t, err := pw.Add(infoBytes, files, peerwire.TorrentOptions{})
	if err != nil {
		return err
	}
	if err := t.Download(ctx, peerwire.DownloadOptions{Peers: []string{os.Getenv("HELLO_PEER")}}); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		return err
	}
	return pw.Serve(ctx, ln)
}
