package httprelay_test

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/relay-sh/relay/dht/localnet"
	"github.com/relay-sh/relay/httprelay"
	"github.com/relay-sh/relay/internal/relaytest"
	"github.com/relay-sh/relay/record"
)

// hostile starts a relay that answers every request with answer.
func hostile(t *testing.T, answer http.HandlerFunc) string {
	t.Helper()
	s := httptest.NewServer(answer)
	t.Cleanup(s.Close)
	return s.URL
}

// TestClientTrustsNoRelay: beside an honest relay, relays that answer an
// older packet, a forged one, another key's, garbage, a body of 2 MB, an
// error with terminal escapes, or nothing for longer than the timeout
// change nothing: Get returns the honest relay's packet, in about the
// timeout. With only those relays, Get fails with an error that is not a
// verification failure and holds no control character.
func TestClientTrustsNoRelay(t *testing.T) {
	t.Parallel()
	ln := localnet.ForTest(t, localnet.Config{Nodes: 4})
	_, honest := relaytest.HTTPRelay(t, httprelay.ServerConfig{DHT: ln.Nodes[0]})
	k := newKey(t)
	now := time.Now().UnixMicro()
	good := packet(t, k, now, "good")
	older := packet(t, k, now-1, "older")
	forged := packet(t, k, now+1000, "forged").Body()
	forged[80] ^= 1
	other := packet(t, newKey(t), now+1000, "other")
	body := func(b []byte) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { w.Write(b) }
	}
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	bad := []string{
		hostile(t, body(older.Body())),
		hostile(t, body(forged)),
		hostile(t, body(other.Body())),
		hostile(t, body([]byte("<html>hello</html>"))),
		hostile(t, body(bytes.Repeat(good.Body(), 2<<20/len(good.Body())))),
		hostile(t, func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "\x1b[2Jrelay: verified\r\n", http.StatusTeapot)
		}),
		hostile(t, func(w http.ResponseWriter, r *http.Request) {
			w.Write(good.Body()[:10])
			w.(http.Flusher).Flush()
			select {
			case <-stop:
			case <-r.Context().Done():
			}
		}),
	}
	c, err := httprelay.NewClient(httprelay.ClientConfig{URLs: append([]string{honest}, bad...), Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t, time.Minute)
	if _, err := c.Put(ctx, good); err != nil {
		t.Fatalf("put: %v", err)
	}
	// Twice: the second time the client knows the honest packet's body,
	// and still verifies every other.
	for range 2 {
		start := time.Now()
		p, st, err := c.Get(ctx, k.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		if p.Seq != good.Seq || p.Sig != good.Sig {
			t.Errorf("got seq %d, want the honest relay's %d", p.Seq, good.Seq)
		}
		if st.Held != 1 || st.Older != 1 || st.Invalid != 4 {
			t.Errorf("stats %+v, want 1 held, 1 older, 4 invalid", st)
		}
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("took %v with a 1 s timeout", d)
		}
	}

	only, err := httprelay.NewClient(httprelay.ClientConfig{URLs: bad[1:], Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = only.Get(ctx, k.PublicKey())
	if !errors.Is(err, httprelay.ErrUnreachable) || record.IsVerification(err) {
		t.Fatalf("hostile relays only: %v; want ErrUnreachable, not a verification failure", err)
	}
	if strings.ContainsAny(err.Error(), "\x1b\r\n") {
		t.Errorf("error holds control characters: %q", err)
	}
	if !strings.Contains(err.Error(), `\x1b[2Jrelay: verified`) {
		t.Errorf("error does not say what the relay said, escaped: %q", err)
	}
}

// TestClientPutRefusals: a relay that holds a newer packet refuses an
// older one (ErrOutdated), and a relay that is down makes Put fail only
// when no other relay took the packet.
func TestClientPutRefusals(t *testing.T) {
	t.Parallel()
	ln := localnet.ForTest(t, localnet.Config{Nodes: 4})
	_, url := relaytest.HTTPRelay(t, httprelay.ServerConfig{DHT: ln.Nodes[0]})
	k := newKey(t)
	now := time.Now().UnixMicro()
	ctx := ctxFor(t, time.Minute)
	c, err := httprelay.NewClient(httprelay.ClientConfig{URLs: []string{url, "http://127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := c.Put(ctx, packet(t, k, now, "new")); err != nil || st.Stored != 1 {
		t.Fatalf("put with one relay down: %+v, %v", st, err)
	}
	if _, err := c.Put(ctx, packet(t, k, now-1, "old")); !errors.Is(err, httprelay.ErrOutdated) {
		t.Fatalf("put of an older packet: %v, want ErrOutdated", err)
	}
	if _, err := httprelay.NewClient(httprelay.ClientConfig{URLs: []string{"ftp://x"}}); err == nil {
		t.Error("an ftp URL was taken")
	}
}
