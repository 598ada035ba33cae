package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/relay-sh/relay/dht"
	"github.com/relay-sh/relay/record"
	"github.com/relay-sh/relay/signer"
	"github.com/rogpeppe/go-internal/testscript"
)

// relayPath finds the relay program testscript put on the script's PATH.
func relayPath(ts *testscript.TestScript) string {
	for _, dir := range filepath.SplitList(ts.Getenv("PATH")) {
		p := filepath.Join(dir, "relay")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	ts.Fatalf("relay is not on PATH")
	return ""
}

// cmdNodes: nodes N starts N `relay node` processes on 127.0.0.1, the
// first a network of its own and the others joined through it, and sets
// $BOOTSTRAP to the first one's address. They are stopped when the script
// ends.
func cmdNodes(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 || neg {
		ts.Fatalf("usage: nodes N")
	}
	n, err := strconv.Atoi(args[0])
	ts.Check(err)
	bin := relayPath(ts)
	// Each network gets data folders of its own: a node keeps its
	// identity and routing table there, and would join an earlier one.
	base, err := os.MkdirTemp(ts.MkAbs("."), "nodes-")
	ts.Check(err)
	var first string
	for i := range n {
		cmd := exec.Command(bin, "node", "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(base, strconv.Itoa(i)))
		if first != "" {
			cmd.Args = append(cmd.Args, "--bootstrap", first)
		}
		cmd.Env = []string{"PATH=" + ts.Getenv("PATH"), "HOME=" + ts.Getenv("HOME")}
		out, err := cmd.StdoutPipe()
		ts.Check(err)
		ts.Check(cmd.Start())
		ts.Defer(func() {
			cmd.Process.Signal(os.Interrupt)
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				cmd.Process.Kill()
			}
		})
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil {
			ts.Fatalf("relay node %d printed no address: %v", i, err)
		}
		if first == "" {
			first = strings.TrimSpace(line)
		}
	}
	ts.Setenv("BOOTSTRAP", first)
}

// cmdStore: store KEYFILE CHANNEL VERSION [EXPIRES] publishes a release
// record into the network at $BOOTSTRAP through the dht package, with a
// made-up bundle: it tests resolve before publish exists.
func cmdStore(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 3 || neg {
		ts.Fatalf("usage: store KEYFILE CHANNEL VERSION [EXPIRES]")
	}
	k, err := signer.ReadKeyFile(ts.MkAbs(args[0]), nil)
	ts.Check(err)
	expires := time.Now().Add(time.Hour)
	if len(args) > 3 {
		d, err := time.ParseDuration(args[3])
		ts.Check(err)
		expires = time.Now().Add(d)
	}
	storeRelease(ts, k, record.Release{
		Channel:  args[1],
		Version:  record.MustParseVersion(args[2]),
		Infohash: record.Infohash{0xab, 0xcd},
		Manifest: record.SHA256([]byte(args[2])),
		Size:     4242,
		Expires:  expires.Truncate(time.Second),
	})
}

// storeRelease signs r with k, keeping the key's other records, and
// stores it into the network at $BOOTSTRAP.
func storeRelease(ts *testscript.TestScript, k *signer.PrivateKey, r record.Release) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := dht.New(ctx, dht.Config{Listen: "127.0.0.1:0", Bootstrap: []string{ts.Getenv("BOOTSTRAP")}, ReadOnly: true})
	ts.Check(err)
	defer n.Close()
	_, st, err := n.Publish(ctx, k, record.ReleaseUpdate(k.PublicKey(), r))
	ts.Check(err)
	ts.Logf("stored %s %s on %d nodes", r.Channel, r.Version, st.Acked)
}

// cmdStoreBody: storebody KEY HEX stores the pkarr relay body HEX, signed
// by KEY, into the network at $BOOTSTRAP, unchanged: a
// replay.
func cmdStoreBody(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 || neg {
		ts.Fatalf("usage: storebody KEY HEX")
	}
	key, err := signer.ParsePublicKey(args[0])
	ts.Check(err)
	body, err := hex.DecodeString(args[1])
	ts.Check(err)
	p, err := record.ParseBody(key, body)
	ts.Check(err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := dht.New(ctx, dht.Config{Listen: "127.0.0.1:0", Bootstrap: []string{ts.Getenv("BOOTSTRAP")}, ReadOnly: true})
	ts.Check(err)
	defer n.Close()
	st, err := n.Store(ctx, p)
	ts.Check(err)
	ts.Logf("stored seq %d on %d nodes", p.Seq, st.Acked)
}

// cmdWaitFor: waitfor FILE REGEXP [SECONDS] waits until FILE exists and
// matches REGEXP (default 60 seconds).
func cmdWaitFor(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 || neg {
		ts.Fatalf("usage: waitfor FILE REGEXP [SECONDS]")
	}
	re, err := regexp.Compile("(?m)" + args[1])
	ts.Check(err)
	limit := 60 * time.Second
	if len(args) > 2 {
		s, err := strconv.Atoi(args[2])
		ts.Check(err)
		limit = time.Duration(s) * time.Second
	}
	deadline := time.Now().Add(limit)
	for {
		b, err := os.ReadFile(ts.MkAbs(args[0]))
		if err == nil && re.Match(b) {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%s did not match %q within %s; it holds:\n%s", args[0], args[1], limit, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
