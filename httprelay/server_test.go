package httprelay_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/relay-sh/relay/dht/localnet"
	"github.com/relay-sh/relay/httprelay"
	"github.com/relay-sh/relay/internal/relaytest"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
)

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func newKey(t testing.TB) *signer.PrivateKey {
	t.Helper()
	k, err := signer.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// packet signs a packet of one TXT record with text at seq.
func packet(t testing.TB, k *signer.PrivateKey, seq int64, text string) *record.SignedPacket {
	t.Helper()
	r := record.Release{
		Channel:  "stable",
		Version:  record.MustParseVersion("1.0.0-" + text),
		Size:     1,
		Expires:  time.Unix(2000000000, 0).UTC(),
		Infohash: record.Infohash{1},
		Manifest: record.Digest{2},
	}
	b, err := record.SetRelease(k.PublicKey(), nil, r)
	if err != nil {
		t.Fatal(err)
	}
	p, err := record.Sign(k, seq, b)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func do(t testing.TB, method, url string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// TestServerStoresThroughToDHT: a packet PUT on the relay is stored in
// the DHT (another node resolves it), and a GET answers it with the
// record's TTL in Cache-Control and CORS headers; a preflight is answered.
func TestServerStoresThroughToDHT(t *testing.T) {
	t.Parallel()
	ln := localnet.ForTest(t, localnet.Config{Nodes: 8})
	_, url := relaytest.HTTPRelay(t, httprelay.ServerConfig{DHT: ln.Nodes[0]})
	k := newKey(t)
	p := packet(t, k, time.Now().UnixMicro(), "a")

	resp, b := do(t, http.MethodPut, url+"/"+k.PublicKey().String(), p.Body())
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PUT: %s %s", resp.Status, b)
	}
	got, _, err := ln.Nodes[5].Resolve(ctxFor(t, 30*time.Second), k.PublicKey())
	if err != nil || got.Seq != p.Seq {
		t.Fatalf("the DHT has %v, %v; want the packet PUT on the relay", got, err)
	}

	resp, b = do(t, http.MethodGet, url+"/"+k.PublicKey().String(), nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(b, p.Body()) {
		t.Fatalf("GET: %s, %d bytes; want 200 and the body", resp.Status, len(b))
	}
	if cc := resp.Header.Get("Cache-Control"); !strings.HasPrefix(cc, "public, max-age=") {
		t.Errorf("Cache-Control %q", cc)
	} else if age, _ := strconv.Atoi(strings.TrimPrefix(cc, "public, max-age=")); age < 250 || age > record.TTL {
		t.Errorf("Cache-Control %q, want the record's TTL, %d s", cc, record.TTL)
	}
	if o := resp.Header.Get("Access-Control-Allow-Origin"); o != "*" {
		t.Errorf("Access-Control-Allow-Origin %q", o)
	}
	if ct := resp.Header.Get("Content-Type"); ct != httprelay.ContentType {
		t.Errorf("Content-Type %q", ct)
	}

	req, _ := http.NewRequest(http.MethodOptions, url+"/"+k.PublicKey().String(), nil)
	req.Header.Set("Origin", "https://example.org")
	req.Header.Set("Access-Control-Request-Method", "PUT")
	pre, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	pre.Body.Close()
	if pre.StatusCode != http.StatusNoContent || !strings.Contains(pre.Header.Get("Access-Control-Allow-Methods"), "PUT") ||
		pre.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("preflight: %s %v", pre.Status, pre.Header)
	}
}

// TestServerStatusCodes: pkarr's relay status codes, and nothing stored
// for a refused request.
func TestServerStatusCodes(t *testing.T) {
	t.Parallel()
	ln := localnet.ForTest(t, localnet.Config{Nodes: 8})
	_, url := relaytest.HTTPRelay(t, httprelay.ServerConfig{DHT: ln.Nodes[0]})
	k := newKey(t)
	u := url + "/" + k.PublicKey().String()
	now := time.Now().UnixMicro()
	newer, older := packet(t, k, now, "new"), packet(t, k, now-1000, "old")

	forged := newer.Body()
	forged[len(forged)-1] ^= 1
	other := packet(t, newKey(t), now, "other")
	for _, c := range []struct {
		name   string
		method string
		url    string
		body   []byte
		want   int
	}{
		{"unknown key", http.MethodGet, u, nil, http.StatusNotFound},
		{"malformed key", http.MethodGet, url + "/not-a-key", nil, http.StatusBadRequest},
		{"forged", http.MethodPut, u, forged, http.StatusBadRequest},
		{"another key's packet", http.MethodPut, u, other.Body(), http.StatusBadRequest},
		{"garbage", http.MethodPut, u, []byte("hello"), http.StatusBadRequest},
		{"over 1072 bytes", http.MethodPut, u, make([]byte, httprelay.MaxBody+1), http.StatusRequestEntityTooLarge},
		{"newer", http.MethodPut, u, newer.Body(), http.StatusNoContent},
		{"same again", http.MethodPut, u, newer.Body(), http.StatusNoContent},
		{"older", http.MethodPut, u, older.Body(), http.StatusConflict},
		{"delete", http.MethodDelete, u, nil, http.StatusMethodNotAllowed},
	} {
		resp, b := do(t, c.method, c.url, c.body)
		if resp.StatusCode != c.want {
			t.Errorf("%s: %s %q, want %d", c.name, resp.Status, b, c.want)
		}
		if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s: no CORS header", c.name)
		}
	}
	resp, b := do(t, http.MethodGet, u, nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(b, newer.Body()) {
		t.Errorf("after the refusals, GET: %s; want the newer packet", resp.Status)
	}
	got, _, err := ln.Nodes[3].Resolve(ctxFor(t, 30*time.Second), k.PublicKey())
	if err != nil || got.Seq != newer.Seq {
		t.Errorf("the DHT holds %v, %v; want the newer packet", got, err)
	}
}

// TestServerKeepsCacheFresh: the relay answers what the DHT holds, and a
// newer packet published straight to the DHT replaces its cached one once
// the cached one's TTL has passed.
func TestServerKeepsCacheFresh(t *testing.T) {
	t.Parallel()
	ln := localnet.ForTest(t, localnet.Config{Nodes: 8})
	_, url := relaytest.HTTPRelay(t, httprelay.ServerConfig{DHT: ln.Nodes[0], MaxTTL: 200 * time.Millisecond, MinTTL: time.Millisecond})
	k := newKey(t)
	ctx := ctxFor(t, time.Minute)
	publish := func(text string) *record.SignedPacket {
		p, _, err := ln.Nodes[4].Publish(ctx, k, func(*record.SignedPacket) ([]byte, error) {
			return packet(t, k, 1, text).Packet, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	first := publish("a")
	u := url + "/" + k.PublicKey().String()
	if resp, b := do(t, http.MethodGet, u, nil); resp.StatusCode != http.StatusOK || !bytes.Equal(b, first.Body()) {
		t.Fatalf("GET: %s; want the packet in the DHT", resp.Status)
	}
	second := publish("b")
	for {
		resp, b := do(t, http.MethodGet, u, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET: %s", resp.Status)
		}
		if bytes.Equal(b, second.Body()) {
			return
		}
		if ctx.Err() != nil {
			t.Fatal("the relay never answered the newer packet")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestServerLimits: one address's requests are rate limited (429 with
// Retry-After), and the cache holds at most MaxEntries keys however many
// are asked for.
func TestServerLimits(t *testing.T) {
	t.Parallel()
	ln := localnet.ForTest(t, localnet.Config{Nodes: 4})
	s, url := relaytest.HTTPRelay(t, httprelay.ServerConfig{DHT: ln.Nodes[0], Rate: rate.Every(time.Hour), Burst: 5, MaxEntries: 3})
	var limited bool
	for i := range 8 {
		resp, _ := do(t, http.MethodGet, url+"/"+newKey(t).PublicKey().String(), nil)
		switch resp.StatusCode {
		case http.StatusNotFound:
			if i >= 5 {
				t.Errorf("request %d answered past the burst of 5", i+1)
			}
		case http.StatusTooManyRequests:
			limited = true
			if resp.Header.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
		default:
			t.Errorf("request %d: %s", i+1, resp.Status)
		}
	}
	if !limited {
		t.Error("no request was limited")
	}
	if n := s.Cached(); n > 3 {
		t.Errorf("%d keys cached, at most 3", n)
	}
}
