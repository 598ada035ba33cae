//go:build linux

package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/relay-sh/relay"
	"github.com/relay-sh/relay/dht/localnet"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
)

// TestRolloutFleet runs a fleet of ten `relay watch --install` processes,
// each with its own data folder, on a local DHT with a seeder, and checks
// each machine against the place the test computes from the secret in its
// data folder (record.RolloutPlace):
//
//   - 2.0.0 published to 10%: exactly the machines placed below 10
//     install it; every other one reports it held back, at its place, at
//     least twice, and keeps 1.0.0;
//   - a held machine restarted keeps its secret and its place;
//   - the same release widened to 100% (publish without PATH): every
//     machine installs it, the early ones not a second time;
//   - a critical 3.0.0 rolled out to 1%: every machine installs it;
//   - 4.0.0 to 1%, then 4.0.1 to everyone: the held machines install
//     4.0.1.
func TestRolloutFleet(t *testing.T) {
	t.Parallel()
	versions := []string{"1.0.0", "2.0.0", "3.0.0", "4.0.0", "4.0.1"}
	k := &killTest{
		top:  t,
		bin:  buildRelay(t),
		boot: localnet.ForTest(t, localnet.Config{Nodes: 8}).Bootstrap.Addr().String(),
		work: t.TempDir(),
		exes: map[string][]byte{},
	}
	for _, v := range versions {
		k.exes[v] = program(v)
		dir := filepath.Join(k.work, "rel-"+v)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "app"), k.exes[v], 0o755); err != nil {
			t.Fatal(err)
		}
	}
	pubDir := filepath.Join(k.work, "pub")
	k.pub = strings.TrimSpace(k.run(t, pubDir, "init", "--key", "k.key"))
	pub, err := signer.ParsePublicKey(k.pub)
	if err != nil {
		t.Fatal(err)
	}
	publish := func(v string, args ...string) {
		t.Helper()
		k.run(t, pubDir, append([]string{"-v", "publish", "--key", "k.key", "--version", v, "--timeout", "60s"}, args...)...)
	}
	// The seeder serves every release at once, whatever its rollout.
	k.start(t, filepath.Join(k.work, "seeder"), "seed", "-v", "--follow", k.pub, "--interval", "300ms")
	publish("1.0.0", filepath.Join(k.work, "rel-1.0.0"))

	place := func(secret []byte, v string) int {
		return record.RolloutPlace(secret, pub, "stable", record.MustParseVersion(v))
	}
	// Machine 0 is given a secret that places it in the 10% of 2.0.0, so
	// that the fleet has an early machine; the others make their own.
	m0 := filepath.Join(k.work, "m0", "data")
	if err := os.MkdirAll(m0, 0o700); err != nil {
		t.Fatal(err)
	}
	for {
		s := make([]byte, 32)
		rand.Read(s)
		if place(s, "2.0.0") < 10 {
			if err := os.WriteFile(filepath.Join(m0, relay.SecretFile), s, 0o600); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	const n = 10
	fleet := make([]*watcher, n)
	dirs := make([]string, n)
	for i := range fleet {
		dirs[i] = filepath.Join(k.work, fmt.Sprintf("m%d", i))
		fleet[i] = k.watch(t, t, dirs[i])
	}
	for _, w := range fleet {
		w.waitFor(t, "installed 1.0.0", func(e watchEvent) bool { return e.Event == "installed" && e.Version == "1.0.0" })
	}
	secrets := make([][]byte, n)
	for i, d := range dirs {
		secrets[i] = readFile(t, filepath.Join(d, "data", relay.SecretFile))
		for j := range i {
			if bytes.Equal(secrets[i], secrets[j]) {
				t.Fatalf("machines %d and %d have the same secret", j, i)
			}
		}
	}
	var early, held []int
	for i, s := range secrets {
		if place(s, "2.0.0") < 10 {
			early = append(early, i)
		} else {
			held = append(held, i)
		}
	}
	t.Logf("places in 2.0.0: early %v, held %v", early, held)
	if len(held) == 0 {
		t.Skip("every machine of the fleet is in the 10%")
	}

	publish("2.0.0", "--rollout", "10", filepath.Join(k.work, "rel-2.0.0"))
	for _, i := range early {
		fleet[i].waitFor(t, "installed 2.0.0", func(e watchEvent) bool { return e.Event == "installed" && e.Version == "2.0.0" })
	}
	for _, i := range held {
		want := place(secrets[i], "2.0.0")
		fleet[i].waitFor(t, fmt.Sprintf("held-back 2.0.0 at place %d twice", want), func(e watchEvent) bool {
			if e.Event == "held-back" && (e.Place == nil || *e.Place != want || e.Rollout != 10 || e.Keeping != "1.0.0") {
				t.Fatalf("machine %d: %+v, want place %d of a 10%% rollout, keeping 1.0.0", i, e, want)
			}
			return e.Event == "held-back" && e.Version == "2.0.0" && fleet[i].count("held-back", "2.0.0") >= 2
		})
	}
	for i, d := range dirs {
		if slices.Contains(early, i) {
			k.checkExe(t, d, "2.0.0")
		} else {
			k.checkExe(t, d, "1.0.0")
			if c := fleet[i].count("installed", "2.0.0"); c != 0 {
				t.Fatalf("held machine %d installed 2.0.0", i)
			}
		}
	}

	// Restarted, a held machine has the same secret and place.
	j := held[0]
	fleet[j].stop(t)
	fleet[j] = k.watch(t, t, dirs[j])
	fleet[j].waitFor(t, "held-back 2.0.0 after a restart", func(e watchEvent) bool {
		return e.Event == "held-back" && e.Version == "2.0.0" && e.Place != nil && *e.Place == place(secrets[j], "2.0.0")
	})
	if s := readFile(t, filepath.Join(dirs[j], "data", relay.SecretFile)); !bytes.Equal(s, secrets[j]) {
		t.Fatal("the restarted machine's secret changed")
	}

	// Widened to everyone: the same release, signed again.
	publish("2.0.0", "--rollout", "100")
	for _, w := range fleet {
		w.waitFor(t, "installed 2.0.0", func(e watchEvent) bool { return e.Event == "installed" && e.Version == "2.0.0" })
	}
	for _, d := range dirs {
		k.checkExe(t, d, "2.0.0")
	}

	// A critical release is held back by no machine.
	publish("3.0.0", "--rollout", "1", "--critical", filepath.Join(k.work, "rel-3.0.0"))
	for _, w := range fleet {
		w.waitFor(t, "installed 3.0.0", func(e watchEvent) bool { return e.Event == "installed" && e.Version == "3.0.0" })
		if w.count("held-back", "3.0.0") != 0 {
			t.Fatal("a machine held the critical release back")
		}
	}

	// A rollout never blocks a later release.
	publish("4.0.0", "--rollout", "1", filepath.Join(k.work, "rel-4.0.0"))
	for i, w := range fleet {
		if place(secrets[i], "4.0.0") >= 1 {
			w.waitFor(t, "held-back 4.0.0", func(e watchEvent) bool { return e.Event == "held-back" && e.Version == "4.0.0" })
		}
	}
	publish("4.0.1", filepath.Join(k.work, "rel-4.0.1"))
	for i, w := range fleet {
		w.waitFor(t, "installed 4.0.1", func(e watchEvent) bool { return e.Event == "installed" && e.Version == "4.0.1" })
		k.checkExe(t, dirs[i], "4.0.1")
	}
	for i, w := range fleet {
		if c := w.count("installed", "2.0.0"); c != 1 {
			t.Errorf("machine %d installed 2.0.0 %d times", i, c)
		}
	}
}
