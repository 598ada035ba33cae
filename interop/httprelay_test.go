package interop

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/dht/localnet"
	"github.com/relay-sh/relay/internal/relaytest"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/transfer"
)

// relayNodeHTTP starts a `relay node --http` process on the local network
// and returns its HTTP relay's URL.
func relayNodeHTTP(t *testing.T, ln *localnet.Net) string {
	t.Helper()
	cmd := runRelay(t, ln, t.TempDir(), "node", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	listening := regexp.MustCompile(`HTTP relay listening on (http://127\.0\.0\.1:\d+)`)
	lines := bufio.NewScanner(stderr)
	for lines.Scan() {
		if m := listening.FindStringSubmatch(lines.Text()); m != nil {
			go io.Copy(io.Discard, stderr)
			return m[1]
		}
	}
	t.Fatalf("relay node --http never said where it listens: %v", lines.Err())
	return ""
}

// pkarrServer starts pkarr's own relay server (npm pkarr 1.3.0) with its
// DHT client on the local network and returns its URL.
func pkarrServer(t *testing.T, ln *localnet.Net) string {
	t.Helper()
	cmd := exec.Command("node", filepath.Join(jsDir, "pkarr.js"), "server", ln.Bootstrap.Addr().String())
	cmd.Dir = jsDir
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	var started struct {
		URL string `json:"url"`
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err == nil {
		err = json.Unmarshal([]byte(line), &started)
	}
	if err != nil || started.URL == "" {
		t.Fatalf("pkarr's relay server did not start: %v %q", err, line)
	}
	go io.Copy(io.Discard, stdout) // it logs every request there
	return started.URL
}

// TestPkarrClientThroughRelayServer: pkarr's own client (npm pkarr's
// Pkarr.relayGet and relayPut) reads a release record relay published in
// the DHT through `relay node --http`, and stores a packet through it that
// relay then resolves from the DHT.
func TestPkarrClientThroughRelayServer(t *testing.T) {
	needNode(t)
	ln := localnet.ForTest(t, localnet.Config{Nodes: 12})
	url := relayNodeHTTP(t, ln) // builds relay first, which can take minutes
	ctx := ctxFor(t, 2*time.Minute)
	key := newKey(t)

	stable, err := client(t, ln, false).Publish(ctx, relay.PublishOptions{
		Key: key, Version: record.MustParseVersion("1.4.2"),
		Sources: []transfer.Source{{Path: releaseDir(t, 100)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got pkarrView
	nodeScript(t, ctx, &got, "pkarr.js", "relayget", url, key.PublicKey().String(), "stable._relay")
	checkPkarrView(t, got, key.PublicKey(), stable.Packet)
	checkRecord(t, got.Records["stable._relay"], key.PublicKey(), stable.Release)

	want := betaRelease()
	records, _ := json.Marshal([]map[string]any{{"name": "beta._relay", "data": txt(want)}})
	var put struct {
		Key    string `json:"key"`
		Seq    int64  `json:"seq"`
		Status int    `json:"status"`
	}
	nodeScript(t, ctx, &put, "pkarr.js", "relayput", url, hex.EncodeToString(key.Seed()), string(records))
	if put.Status/100 != 2 {
		t.Fatalf("pkarr's relayPut through relay's server: HTTP %d", put.Status)
	}
	r, err := client(t, ln, true).Resolve(ctx, key.PublicKey(), "beta")
	if err != nil {
		t.Fatalf("relay resolves from the DHT what pkarr stored through relay's server: %v", err)
	}
	if r.Packet.Seq != put.Seq {
		t.Errorf("relay resolved seq %d, pkarr signed %d", r.Packet.Seq, put.Seq)
	}
	sameRelease(t, r.Release, want)
}

// TestRelayClientThroughPkarrServer: relay's client, with no DHT node it
// can reach, publishes through pkarr's own relay server (npm pkarr 1.3.0),
// which stores the record in the DHT where a relay client without relays
// resolves it; and it reads a record published in the DHT through pkarr's
// server.
func TestRelayClientThroughPkarrServer(t *testing.T) {
	needNode(t)
	ln := localnet.ForTest(t, localnet.Config{Nodes: 12})
	ctx := ctxFor(t, 2*time.Minute)
	url := pkarrServer(t, ln)
	key := newKey(t)

	silent := relaytest.SilentNode(t)
	blocked := func(readOnly bool) *relay.Client {
		c, err := relay.Open(ctx, relay.Config{
			DataDir: t.TempDir(), Bootstrap: []string{silent}, Listen: "127.0.0.1:0",
			ReadOnly: readOnly, Relays: []string{url},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	p, err := blocked(false).Publish(ctx, relay.PublishOptions{
		Key: key, Version: record.MustParseVersion("1.0.0"),
		Sources: []transfer.Source{{Path: releaseDir(t, 100)}},
	})
	if err != nil {
		t.Fatalf("publish through pkarr's server: %v", err)
	}
	if p.RelaysStored != 1 {
		t.Errorf("stored on %d relays", p.RelaysStored)
	}
	r, err := client(t, ln, true).Resolve(ctx, key.PublicKey(), "stable")
	if err != nil || r.Packet.Seq != p.Packet.Seq {
		t.Fatalf("relay resolves from the DHT what it stored through pkarr's server: %v, %v", r, err)
	}

	other := newKey(t)
	q, err := client(t, ln, false).Publish(ctx, relay.PublishOptions{
		Key: other, Version: record.MustParseVersion("2.0.0"),
		Sources: []transfer.Source{{Path: releaseDir(t, 100)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err = blocked(true).Resolve(ctx, other.PublicKey(), "stable")
	if err != nil {
		t.Fatalf("resolve through pkarr's server: %v", err)
	}
	if r.Packet.Seq != q.Packet.Seq || r.Relays.Held != 1 || r.Stats.Answered != 0 {
		t.Errorf("resolved seq %d from %d relays and %d DHT nodes; want %d from pkarr's server alone", r.Packet.Seq, r.Relays.Held, r.Stats.Answered, q.Packet.Seq)
	}
	sameRelease(t, r.Release, q.Release)
}
