//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A netLab is a small internet in network namespaces, for running real
// relay processes on either side of a NAT:
//
//	wan: the public side, a bridge at 10.9.0.1/24; public processes run
//	     here, each on an address of its own (10.9.0.100 to .219, in
//	     turn), with a `relay node` on 10.9.0.1:6881 as everyone's
//	     bootstrap
//	r<k>: site k's router: 10.9.0.1<k> on the bridge, 10.10.<k>.1 inside
//	h<k>: a host of site k, 10.10.<k>.2, routed through r<k>
//
// With nat, each router masquerades its site behind its public address
// and drops every new flow from the public side (nftables: only
// established and related packets get in, to the site or to the router),
// as a home router or a CI runner's network does. Without it the routers
// only route, both ways: the same topology with nothing in the way.
type netLab struct {
	t    testing.TB
	nat  bool
	bin  string // the relay program
	dir  string
	id   string   // the prefix of this lab's namespace names
	nss  []string // namespaces to delete
	boot string   // the bootstrap node's address
	// wanSeq picks the next public process's address. Each has its own,
	// as hosts on the internet do: DHT nodes keep one node of an address
	// in a lookup's closest set, so with every public process on one
	// address a record stored on one of them was missed by lookups that
	// asked another first (a fetch said "nothing published").
	wanSeq atomic.Int32
}

var labSeq atomic.Int32

// The lab's fixed addresses.
const (
	wanAddr  = "10.9.0.1"
	bootAddr = wanAddr + ":6881"
	// wanFirst and wanHosts: the public processes' addresses.
	wanFirst = 100
	wanHosts = 120
)

func siteHost(k int) string   { return fmt.Sprintf("10.10.%d.2", k) }
func siteRouter(k int) string { return fmt.Sprintf("10.9.0.1%d", k) }

// needNetLab skips t unless it can build a netLab: Linux, root, and the
// ip and nft commands (.ci/run installs iproute2 and nftables).
func needNetLab(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root, to make network namespaces (CI runs as root)")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs the %s command (apt-get install iproute2 nftables)", tool)
		}
	}
}

// newNetLab makes the public side and sites 1 to sites, builds relay and
// starts the bootstrap node. Everything is removed when t ends.
func newNetLab(t testing.TB, bin string, sites int, nat bool) *netLab {
	t.Helper()
	l := &netLab{
		t: t, nat: nat, bin: bin, dir: t.TempDir(),
		id: fmt.Sprintf("rly%d-%d", os.Getpid(), labSeq.Add(1)),
	}
	t.Cleanup(l.remove)
	wan := l.namespace("wan")
	l.ip("-n", wan, "link", "add", "br0", "type", "bridge")
	l.ip("-n", wan, "addr", "add", wanAddr+"/24", "dev", "br0")
	var hosts strings.Builder
	for i := range wanHosts {
		fmt.Fprintf(&hosts, "addr add 10.9.0.%d/24 dev br0\n", wanFirst+i)
	}
	l.exec([]byte(hosts.String()), "ip", "-n", wan, "-batch", "-")
	l.ip("-n", wan, "link", "set", "br0", "up")
	l.ip("-n", wan, "link", "set", "lo", "up")
	for k := 1; k <= sites; k++ {
		r, h := l.namespace(fmt.Sprintf("r%d", k)), l.namespace(fmt.Sprintf("h%d", k))
		port := fmt.Sprintf("s%d", k)
		l.ip("link", "add", "wan", "netns", r, "type", "veth", "peer", "name", port, "netns", wan)
		l.ip("link", "add", "lan", "netns", r, "type", "veth", "peer", "name", "eth0", "netns", h)
		l.ip("-n", wan, "link", "set", port, "master", "br0", "up")
		l.ip("-n", r, "addr", "add", siteRouter(k)+"/24", "dev", "wan")
		l.ip("-n", r, "addr", "add", fmt.Sprintf("10.10.%d.1/24", k), "dev", "lan")
		l.ip("-n", h, "addr", "add", siteHost(k)+"/24", "dev", "eth0")
		for _, ns := range []string{r, h} {
			l.ip("-n", ns, "link", "set", "lo", "up")
		}
		l.ip("-n", r, "link", "set", "wan", "up")
		l.ip("-n", r, "link", "set", "lan", "up")
		l.ip("-n", h, "link", "set", "eth0", "up")
		l.ip("-n", h, "route", "add", "default", "via", fmt.Sprintf("10.10.%d.1", k))
		l.exec(nil, "ip", "netns", "exec", r, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
		if nat {
			l.exec([]byte(natRules), "ip", "netns", "exec", r, "nft", "-f", "-")
		} else {
			l.ip("-n", wan, "route", "add", fmt.Sprintf("10.10.%d.0/24", k), "via", siteRouter(k))
		}
	}
	out := l.start(t, 0, "boot", "node", "--listen", bootAddr)
	if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
		t.Fatalf("relay node printed no address: %v", err)
	}
	l.boot = bootAddr
	return l
}

// natRules make a router a NAT that accepts no new flow from outside.
const natRules = `table inet relaynat {
	chain forward {
		type filter hook forward priority 0; policy drop;
		ct state established,related accept
		iifname "lan" accept
	}
	chain input {
		type filter hook input priority 0; policy drop;
		ct state established,related accept
		iifname { "lo", "lan" } accept
	}
	chain post {
		type nat hook postrouting priority 100;
		oifname "wan" masquerade
	}
}
`

// namespace makes a namespace of the lab.
func (l *netLab) namespace(name string) string {
	ns := l.id + "-" + name
	l.ip("netns", "add", ns)
	l.nss = append(l.nss, ns)
	return ns
}

func (l *netLab) ip(args ...string) { l.exec(nil, "ip", args...) }

// exec runs a setup command; a namespace that cannot be made skips the
// test (a container without the privilege), anything else fails it.
func (l *netLab) exec(stdin []byte, name string, args ...string) {
	l.t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err == nil {
		return
	}
	if len(args) > 1 && args[0] == "netns" && args[1] == "add" {
		l.t.Skipf("cannot make a network namespace: %v: %s", err, out)
	}
	l.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
}

// remove deletes the lab's namespaces, and with them their links.
func (l *netLab) remove() {
	for _, ns := range l.nss {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			l.t.Logf("ip netns del %s: %v: %s", ns, err, out)
		}
	}
}

// host returns the namespace and the listen address of a host: the
// public side's next address, or site k's host.
func (l *netLab) host(k int) (ns, listen string) {
	if k == 0 {
		n := int(l.wanSeq.Add(1)-1) % wanHosts
		return l.id + "-wan", fmt.Sprintf("10.9.0.%d:0", wanFirst+n)
	}
	return fmt.Sprintf("%s-h%d", l.id, k), siteHost(k) + ":0"
}

// command is relay on host k (see host), with home and data folder
// dir/name.
func (l *netLab) command(ctx context.Context, k int, name string, args ...string) *exec.Cmd {
	ns, listen := l.host(k)
	dir := filepath.Join(l.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		l.t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, l.bin}, args...)...)
	cmd.Dir = dir
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + dir,
		"RELAY_BOOTSTRAP=" + bootAddr,
		"RELAY_LISTEN=" + listen,
		"RELAY_DATA_DIR=" + filepath.Join(dir, "data"),
	}
	return cmd
}

// start starts a long-running relay on host k (a node, a seeder), stopped
// with SIGINT when t ends; what it logged is shown if t failed. Its data
// folder is dir/name. It returns the process's stdout.
func (l *netLab) start(t testing.TB, k int, name string, args ...string) io.Reader {
	t.Helper()
	cmd := l.command(context.Background(), k, name, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	startUntilCleanup(t, cmd, fmt.Sprintf("%s (%s)", strings.Join(args, " "), name))
	return out
}

// run runs relay on host k to its end, within limit, and returns its stdout,
// its stderr and its error.
func (l *netLab) run(limit time.Duration, k int, name string, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var o, e bytes.Buffer
	cmd := l.command(ctx, k, name, args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// buildRelay builds the relay program once for the tests of a run.
func buildRelay(t testing.TB) string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command to build relay with")
	}
	bin := filepath.Join(t.TempDir(), "relay")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}
