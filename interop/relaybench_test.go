package interop

import (
	"context"
	"crypto/rand"
	xrate "golang.org/x/time/rate"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/relay-sh/relay/dht/localnet"
	"github.com/relay-sh/relay/httprelay"
	"github.com/relay-sh/relay/internal/relaytest"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
)

// BenchmarkResolveThroughHTTPRelay: a resolve through a pkarr HTTP relay
// on loopback that has the record cached (httprelay.Client.Get: the
// request, the body read within its bound, the signature verified),
// against a plain HTTP GET of the same body from a handler that only
// writes it, with the same kind of client (keep-alive). Target: at least
// 0.5×, within two plain round trips.
func BenchmarkResolveThroughHTTPRelay(b *testing.B) {
	ln := localnet.ForTest(b, localnet.Config{Nodes: 4})
	ctx := context.Background()
	key, _ := signer.Generate(rand.Reader)
	p, _, err := ln.Nodes[0].Publish(ctx, key, func(*record.SignedPacket) ([]byte, error) {
		return benchRelease(b, key.PublicKey()), nil
	})
	if err != nil {
		b.Fatal(err)
	}
	_, relayURL := relaytest.HTTPRelay(b, httprelay.ServerConfig{DHT: ln.Nodes[1], Rate: xrate.Inf})
	body := p.Body()
	plainURL := serveHTTP(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))

	c, err := httprelay.NewClient(httprelay.ClientConfig{URLs: []string{relayURL}})
	if err != nil {
		b.Fatal(err)
	}
	if _, _, err := c.Get(ctx, key.PublicKey()); err != nil { // fills the cache
		b.Fatal(err)
	}
	hc := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	plain := plainURL + "/" + key.PublicKey().String()
	relayRate, plainRate := best(func() {
		got, _, err := c.Get(ctx, key.PublicKey())
		if err != nil || got.Seq != p.Seq {
			b.Fatal(got, err)
		}
	}, func() {
		resp, err := hc.Get(plain)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if n != int64(len(body)) {
			b.Fatalf("read %d bytes", n)
		}
	})
	b.ReportMetric(relayRate, "resolves/s")
	b.ReportMetric(plainRate, "http-gets/s")
	b.ReportMetric(1e6/relayRate, "µs/resolve")
	b.ReportMetric(relayRate/plainRate, "x-http-get")
}

// serveHTTP serves h on 127.0.0.1 until b ends and returns its URL.
func serveHTTP(b *testing.B, h http.Handler) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go s.Serve(l)
	b.Cleanup(func() { s.Close() })
	return "http://" + l.Addr().String()
}
