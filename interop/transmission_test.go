package interop

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/relay-sh/relay/dht/localnet"
)

// needTransmission returns the paths of transmission-daemon and
// transmission-remote, or skips t.
func needTransmission(t testing.TB) (daemon, remote string) {
	t.Helper()
	d, err1 := exec.LookPath("transmission-daemon")
	r, err2 := exec.LookPath("transmission-remote")
	if err1 != nil || err2 != nil {
		t.Skip("transmission-daemon or transmission-remote is not installed (Debian: apt-get install transmission-daemon transmission-cli): the Transmission interop tests need them")
	}
	return d, r
}

// transmissionSeeds starts transmission-daemon seeding the torrent in
// torrent from the files under dir, and returns its BitTorrent port on
// 127.0.0.1 once it verified them and seeds. Transmission never dials
// 127.0.0.0/8 and its DHT ignores loopback nodes: peers must dial it.
func transmissionSeeds(t *testing.T, ctx context.Context, _ *localnet.Net, dir, torrent string) int {
	t.Helper()
	daemon, remote := needTransmission(t)
	conf := t.TempDir()
	rpc, peer := freePort(t), freePort(t)
	cmd := exec.CommandContext(ctx, daemon, "-f", "-g", conf, "-p", strconv.Itoa(rpc), "-P", strconv.Itoa(peer),
		"-T", "-O", "-Y", "-M", "-w", dir, "--utp", "--log-error", "-a", "127.0.0.1")
	background(t, cmd, "transmission-daemon")
	rpcAddr := "127.0.0.1:" + strconv.Itoa(rpc)
	var out []byte
	var err error
	for range 100 {
		out, err = exec.CommandContext(ctx, remote, rpcAddr, "-a", torrent, "-w", dir).CombinedOutput()
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("transmission-remote -a: %v\n%s", err, out)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		out, _ = exec.CommandContext(ctx, remote, rpcAddr, "-t", "all", "-i").CombinedOutput()
		// "Idle" or "Seeding" once it verified the files.
		if strings.Contains(string(out), "Percent Done: 100%") && !strings.Contains(string(out), "Verif") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("transmission did not seed the torrent within a minute:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return peer
}

// TestRelayFetchesFromTransmission: relay fetches a 20 MB bundle that only
// Transmission 3.00 seeds, dialling it (Transmission never dials
// loopback). Before, the fetch stopped at 16,756,522 of 20,000,554 bytes
// every time, until its deadline: Transmission rejects the 512th request
// it advertises room for, and the torrent library never asked it again.
func TestRelayFetchesFromTransmission(t *testing.T) {
	needTransmission(t)
	t.Parallel()
	relayFetchesFrom(t, true, transmissionSeeds, 20<<20, 4321)
}
