package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// TestListenDefault: with no --listen, relay listens on loopback when
// every bootstrap node is on loopback (a network on this machine), and on
// every interface otherwise.
func TestListenDefault(t *testing.T) {
	for _, c := range []struct {
		listen    string
		bootstrap []string
		port      string
		want      string
	}{
		{"", nil, "0", ""},
		{"", nil, "6881", ":6881"},
		{"", []string{"127.0.0.1:6881"}, "0", "127.0.0.1:0"},
		{"", []string{"localhost:6881", "127.0.0.2:7000"}, "6881", "127.0.0.1:6881"},
		{"", []string{"[::1]:6881"}, "0", "[::1]:0"},
		{"", []string{"127.0.0.1:6881", "router.bittorrent.com:6881"}, "0", ""},
		{"", []string{"192.0.2.1:6881"}, "6881", ":6881"},
		{"0.0.0.0:7000", []string{"127.0.0.1:6881"}, "0", "0.0.0.0:7000"},
	} {
		e := &env{listen: c.listen, bootstrap: c.bootstrap}
		if got := e.listenAddr(c.port); got != c.want {
			t.Errorf("--listen %q, --bootstrap %v: listen %q, want %q", c.listen, c.bootstrap, got, c.want)
		}
	}
}

// TestListenInUse: a port another process holds gives exit 1 and a hint
// that says so.
func TestListenInUse(t *testing.T) {
	busy, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"relay", "--data-dir", t.TempDir(), "node", "--listen", busy.LocalAddr().String()}, strings.NewReader(""), &stdout, &stderr)
	if code != exitError || !strings.Contains(stderr.String(), "address already in use") ||
		!strings.Contains(stderr.String(), "relay: hint: another process listens on that port") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
}
