package interop

// Benchmarks that compare relay with a baseline measured in the same run
// (the machine is shared and noisy): each reports its ratio as an
// "x-<baseline>" metric, which `task bench` gathers into one table. Run them
// with -benchtime 1x: each measures for as long as it needs.

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/dht/localnet"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/relay-sh/relay/transfer"
)

// rate runs f for about d and returns how many times a second it ran.
func rate(f func(), d time.Duration) float64 {
	n, start := 0, time.Now()
	for time.Since(start) < d {
		for range 32 {
			f()
		}
		n += 32
	}
	return float64(n) / time.Since(start).Seconds()
}

// best interleaves rounds of measuring a and b and returns the best rate
// of each, so that a burst of load from others hurts both alike.
func best(a, b func()) (ra, rb float64) {
	for range 8 {
		ra = max(ra, rate(a, 150*time.Millisecond))
		rb = max(rb, rate(b, 150*time.Millisecond))
	}
	return ra, rb
}

func benchRelease(b *testing.B, k signer.PublicKey) []byte {
	ih, _ := record.ParseInfohash("8731b8987462fcf7a9a103530cf7732af34165d1")
	m, _ := record.ParseDigest("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
	r := record.Release{Channel: "stable", Version: record.MustParseVersion("1.4.2"), Infohash: ih, Manifest: m,
		Size: 31457901, Expires: time.Now().Add(time.Hour), WebSeeds: []string{"https://example.org/bundles/"}}
	p, err := record.SetRelease(k, nil, r)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkRecordSign: a release record encoded into a DNS packet and
// signed, against raw ed25519 signing of a message of the same size.
func BenchmarkRecordSign(b *testing.B) {
	key, _ := signer.Generate(rand.Reader)
	packet := benchRelease(b, key.PublicKey())
	priv := ed25519.NewKeyFromSeed(key.Seed())
	msg := record.SigningBuffer(1, packet)
	r := mustFind(b, key.PublicKey(), packet)
	var seq int64
	relayRate, rawRate := best(func() {
		seq++
		p, err := record.SetRelease(key.PublicKey(), nil, r)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := record.Sign(key, seq, p); err != nil {
			b.Fatal(err)
		}
	}, func() { ed25519.Sign(priv, msg) })
	b.ReportMetric(relayRate, "records/s")
	b.ReportMetric(rawRate, "ed25519-signs/s")
	b.ReportMetric(relayRate/rawRate, "x-ed25519-sign")
}

func mustFind(b *testing.B, k signer.PublicKey, packet []byte) record.Release {
	r, err := record.FindRelease(k, packet, "stable")
	if err != nil {
		b.Fatal(err)
	}
	return r
}

// BenchmarkRecordVerify: a pkarr body decoded, its signature checked and
// the release record read from its packet, against raw ed25519
// verification of the same message (target: at least 0.8 ×).
func BenchmarkRecordVerify(b *testing.B) {
	key, _ := signer.Generate(rand.Reader)
	p, err := record.Sign(key, time.Now().UnixMicro(), benchRelease(b, key.PublicKey()))
	if err != nil {
		b.Fatal(err)
	}
	body := p.Body()
	pub := key.PublicKey()
	msg := record.SigningBuffer(p.Seq, p.Packet)
	relayRate, rawRate := best(func() {
		sp, err := record.ParseBody(pub, body)
		if err != nil {
			b.Fatal(err)
		}
		mustFind(b, pub, sp.Packet)
	}, func() {
		if !ed25519.Verify(pub.Ed25519(), msg, p.Sig[:]) {
			b.Fatal("bad signature")
		}
	})
	b.ReportMetric(relayRate, "records/s")
	b.ReportMetric(rawRate, "ed25519-verifies/s")
	b.ReportMetric(relayRate/rawRate, "x-ed25519-verify")
}

// BenchmarkResolveVsBittorrentDHT: on a 64-node local DHT, relay's resolve
// of a key against bittorrent-dht's get of the same item, both joined to
// the same network and warmed by one lookup.
func BenchmarkResolveVsBittorrentDHT(b *testing.B) {
	needNodeB(b)
	const n = 30
	net := localnet.ForTest(b, localnet.Config{Nodes: 64})
	ctx := context.Background()
	key, _ := signer.Generate(rand.Reader)
	if _, _, err := net.Nodes[0].Publish(ctx, key, func(*record.SignedPacket) ([]byte, error) {
		return benchRelease(b, key.PublicKey()), nil
	}); err != nil {
		b.Fatal(err)
	}
	// A relay client's node, read-only as relay resolve runs it.
	dn := client(b, net, true).Node()
	var msgs, answered int
	var took time.Duration
	resolve := func() {
		start := time.Now()
		_, st, err := dn.Resolve(ctx, key.PublicKey())
		if err != nil {
			b.Fatal(err)
		}
		took += time.Since(start)
		msgs += st.Messages
		answered += st.Answered
	}
	resolve()
	msgs, answered, took = 0, 0, 0
	for range n {
		// A node sends at most dht.DefaultSendRate packets a second, as
		// the public DHT expects: a pause lets the limiter refill, so
		// this measures one resolve's latency, not that rate.
		time.Sleep(150 * time.Millisecond)
		resolve()
	}
	relayMS := float64(took.Microseconds()) / 1000 / n

	var js dhtOp
	node(b, ctxFor(b, time.Minute), &js, "bench-get", net.Bootstrap.Addr().String(), hex.EncodeToString(key.PublicKey().Ed25519()), strconv.Itoa(n))
	b.ReportMetric(relayMS, "ms/resolve")
	b.ReportMetric(float64(msgs)/n, "msgs/resolve")
	b.ReportMetric(float64(answered)/n, "answered/resolve")
	b.ReportMetric(js.MS, "ms/bittorrent-dht-get")
	b.ReportMetric(js.Msgs, "msgs/bittorrent-dht-get")
	b.ReportMetric(js.Answered, "answered/bittorrent-dht-get")
	b.ReportMetric(relayMS/js.MS, "x-bittorrent-dht")
}

// BenchmarkPublishVsBittorrentDHT: on a 64-node local DHT, relay's publish
// (read the current packet, sign, store on the closest nodes) against
// bittorrent-dht's put of a mutable item of the same size. bittorrent-dht
// walks the DHT on its first put of a key only and reuses that walk after,
// so it does less work per put than relay.
func BenchmarkPublishVsBittorrentDHT(b *testing.B) {
	needNodeB(b)
	const n = 30
	net := localnet.ForTest(b, localnet.Config{Nodes: 64})
	ctx := context.Background()
	key, _ := signer.Generate(rand.Reader)
	dn := client(b, net, true).Node()
	var msgs, answered, acked int
	var took time.Duration
	publish := func() {
		start := time.Now()
		_, st, err := dn.Publish(ctx, key, func(*record.SignedPacket) ([]byte, error) {
			return benchRelease(b, key.PublicKey()), nil
		})
		if err != nil {
			b.Fatal(err)
		}
		took += time.Since(start)
		msgs += st.Messages
		answered += st.Answered
		acked += st.Acked
	}
	publish()
	msgs, answered, acked, took = 0, 0, 0, 0
	for range n {
		time.Sleep(250 * time.Millisecond) // let the send limiter refill (see above)
		publish()
	}
	relayMS := float64(took.Microseconds()) / 1000 / n

	other, _ := signer.Generate(rand.Reader)
	var js dhtOp
	node(b, ctxFor(b, time.Minute), &js, "bench-put", net.Bootstrap.Addr().String(), hex.EncodeToString(other.Seed()), strconv.Itoa(n))
	b.ReportMetric(relayMS, "ms/publish")
	b.ReportMetric(float64(msgs)/n, "msgs/publish")
	b.ReportMetric(float64(answered)/n, "answered/publish")
	b.ReportMetric(float64(acked)/n, "acked/publish")
	b.ReportMetric(js.MS, "ms/bittorrent-dht-put")
	b.ReportMetric(js.Msgs, "msgs/bittorrent-dht-put")
	b.ReportMetric(js.Answered, "answered/bittorrent-dht-put")
	b.ReportMetric(js.Nodes, "acked/bittorrent-dht-put")
	b.ReportMetric(relayMS/js.MS, "x-bittorrent-dht")
}

// dhtOp is what bep44.js's bench-get and bench-put print: per operation,
// its time, the queries sent, the distinct nodes that answered them, and
// for a put the nodes that stored the item.
type dhtOp struct {
	MS       float64 `json:"ms"`
	Msgs     float64 `json:"msgs"`
	Answered float64 `json:"answered"`
	Nodes    float64 `json:"nodes"`
}

func needNodeB(b *testing.B) {
	if !jsInstalled() {
		b.Skipf("npm packages %v not installed: run npm ci in %s", jsPackages, jsDir)
	}
}

// memory returns a process's resident set now and at its peak, in bytes
// (VmRSS and VmHWM of /proc/PID/status).
func memory(pid int) (rss, peak int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(fields[1], 10, 64)
		switch fields[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			peak = kb << 10
		}
	}
	return rss, peak, sc.Err()
}

// sample polls the process's memory for d and returns its resident set at
// the end and its peak.
func sample(b *testing.B, cmd *exec.Cmd, d time.Duration) (rss, peak int64) {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		r, p, err := memory(cmd.Process.Pid)
		if err != nil {
			b.Fatalf("relay exited: %v", err)
		}
		rss, peak = r, max(peak, p)
		time.Sleep(200 * time.Millisecond)
	}
	return rss, peak
}

// BenchmarkMemorySeed100: peak RSS of `relay seed` serving 100 releases
// (target: under 100 MB).
func BenchmarkMemorySeed100(b *testing.B) {
	ln := localnet.ForTest(b, localnet.Config{Nodes: 16})
	ctx := ctxFor(b, 2*time.Minute)
	dataDir := b.TempDir()
	key := newKey(b)
	start := time.Now()
	for i := range 100 {
		if _, err := transfer.Make(ctx, transfer.MakeOptions{
			Dir: transfer.BundlesDir(dataDir), Key: key.PublicKey(),
			Version:   record.MustParseVersion(fmt.Sprintf("1.0.%d", i)),
			Sources:   []transfer.Source{{Path: releaseDir(b, 256<<10, 1000)}},
			Published: time.Now(),
		}); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("made 100 bundles in %v", time.Since(start))
	cmd := runRelay(b, ln, dataDir, "--json", "seed")
	// Its events (JSON lines on stdout) say when each bundle is served.
	logs, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	served := make(chan int, 1)
	go func() {
		n := 0
		sc := bufio.NewScanner(logs)
		for sc.Scan() {
			if strings.Contains(sc.Text(), `"seeding"`) {
				if n++; n == 100 {
					served <- n
				}
			}
		}
	}()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	select {
	case <-served:
	case <-time.After(time.Minute):
		b.Fatal("relay seed did not serve 100 bundles in a minute")
	}
	rss, peak := sample(b, cmd, 5*time.Second)
	b.ReportMetric(float64(peak)/1e6, "MB-peak")
	b.ReportMetric(float64(rss)/1e6, "MB-end")
	b.ReportMetric(float64(peak)/100e6, "x-target-100MB")
}

// BenchmarkMemoryWatchIdle: RSS of `relay watch` once it has installed the
// current release and waits for the next (target: under 40 MB).
func BenchmarkMemoryWatchIdle(b *testing.B) {
	ln := localnet.ForTest(b, localnet.Config{Nodes: 16})
	ctx := ctxFor(b, 2*time.Minute)
	key := newKey(b)
	pub := client(b, ln, false)
	if _, err := pub.Publish(ctx, relay.PublishOptions{
		Key: key, Version: record.MustParseVersion("1.0.0"),
		Sources: []transfer.Source{{Path: releaseDir(b, 1<<20)}},
	}); err != nil {
		b.Fatal(err)
	}
	out := b.TempDir()
	cmd := runRelay(b, ln, b.TempDir(), "-q", "watch", key.PublicKey().String(), "--out", out, "--interval", "1h")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; {
		if _, err := os.Stat(filepath.Join(out, "file0")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("relay watch placed nothing in a minute")
		}
		time.Sleep(100 * time.Millisecond)
	}
	rss, peak := sample(b, cmd, 5*time.Second)
	b.ReportMetric(float64(rss)/1e6, "MB-idle")
	b.ReportMetric(float64(peak)/1e6, "MB-peak")
	b.ReportMetric(float64(rss)/40e6, "x-target-40MB")
}

// aria2Transfer reads an aria2 log: the time from its first connection to
// a peer to its download's end.
func aria2Transfer(logFile string) (time.Duration, error) {
	f, err := os.Open(logFile)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var first, done time.Time
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if len(line) < 26 {
			continue
		}
		at, err := time.Parse("2006-01-02 15:04:05.000000", line[:26])
		if err != nil {
			continue
		}
		switch {
		case first.IsZero() && strings.Contains(line, "Connecting to 127.0.0.1:"):
			first = at
		case strings.Contains(line, "Download complete:"):
			done = at
		}
	}
	if first.IsZero() || done.IsZero() {
		return 0, fmt.Errorf("aria2 log %s: no connection or no completion", logFile)
	}
	return done.Sub(first), sc.Err()
}
