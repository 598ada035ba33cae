#!/usr/bin/env python3
"""lt.py: libtorrent-rasterbar (Debian's python3-libtorrent), the reference
BEP 44 implementation and the most deployed BitTorrent library, driven by
relay's interop tests. It joins a DHT through one bootstrap node on
127.0.0.1, never listens on or contacts anything else, and prints JSON on
stdout (hex for bytes); errors go to stderr with exit status 1.

  lt.py get HOST:PORT PUBKEY_HEX [NODE_HOST:PORT]
      gets the mutable item of PUBKEY (no salt) and prints
      {target, seq, sig, v, answers}: libtorrent accepts only an item whose
      signature it verified; answers is v decoded here as a DNS packet.
      NODE is a further DHT node added to the routing table.
  lt.py put HOST:PORT SEED_HEX V_HEX
      stores the mutable item v (no salt) under the key of the 32-byte
      ed25519 SEED and prints {key, target, seq, sig, v, nodes}: key is the
      public key derived here from SEED, nodes how many nodes took the item.
  lt.py fetch HOST:PORT MAGNET DIR [PEER_HOST:PORT]
      downloads the torrent of MAGNET into DIR, finding peers in the DHT
      (and at PEER if given), checks every piece, and prints {name, size,
      seconds, metadata_seconds}: the times from adding the magnet link to
      having every piece, and to having the metadata. With LT_TCP=1 in the
      environment libtorrent dials TCP only, as relay does (by default it
      dials uTP first); with LT_UTP=1 it dials and accepts uTP only.
  lt.py seed HOST:PORT TORRENT_FILE DIR
      checks DIR's files against TORRENT_FILE, then seeds them and
      announces itself in the DHT; prints {port} on one line once seeding
      and runs until its stdin is closed.
"""

import collections
import hashlib
import json
import os
import sys
import threading
import time
import warnings

import libtorrent as lt

# DEADLINE, in seconds, bounds every wait but seed's, which ends with its
# stdin; the tests' own limits are longer, so that lt.py says what it
# waited for.
DEADLINE = 45

# history keeps the last alerts, and describe says what the command was
# doing (a torrent's state and peers): a failure prints both on stderr, so
# that a test that failed says why libtorrent gave up.
START = time.monotonic()
history = collections.deque(maxlen=600)
# closes keeps the last connections that ended or failed apart: a fetch's
# peer log can push them out of history within seconds.
closes = collections.deque(maxlen=50)
describe = []


def fail(msg):
    sys.stderr.write("lt.py: " + msg + "\n")
    if history:
        sys.stderr.write("lt.py: the last %d alerts (seconds since start):\n" % len(history))
        sys.stderr.write("".join("  %s\n" % h for h in history))
    if closes:
        sys.stderr.write("lt.py: the last %d connections that ended or failed:\n" % len(closes))
        sys.stderr.write("".join("  %s\n" % h for h in closes))
    for d in describe:
        try:
            sys.stderr.write(d())
        except Exception as e:  # the description must not hide msg
            sys.stderr.write("lt.py: no description: %r\n" % (e,))
    sys.exit(1)


def settings(bootstrap):
    """The session settings for a private DHT on 127.0.0.1."""
    return {
        # The DHT uses the listening UDP socket: both on loopback, and
        # connections made leave from it too.
        "listen_interfaces": "127.0.0.1:0",
        "outgoing_interfaces": "127.0.0.1",
        "enable_dht": True,
        "dht_bootstrap_nodes": bootstrap,
        # A torrent asks the DHT for peers, and announces itself, every
        # dht_announce_interval (default 15 minutes): an ask made before
        # the routing table reached the nodes that hold the peers finds
        # none, and the fetch would wait the rest of the interval. On a
        # private network of a few nodes, ask again every few seconds.
        "dht_announce_interval": 3,
        # Every node here is 127.0.0.1. By default libtorrent's routing
        # table takes one node per IP, and a lookup ignores the nodes it
        # is told of on an IP (a /24) it already has.
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        # Every peer is 127.0.0.1 too, libtorrent itself included when the
        # DHT names it; by default it keeps one connection per IP.
        "allow_multiple_connections_per_ip": True,
        # A peer whose connection closed is dialled again at the earliest
        # min_reconnect_time (default 60 s) times one more than its
        # failures after, and never after max_failcount (3) failures:
        # connect_peer only adds the address to the torrent's list, so
        # fetch's redial every 2 s could wait a minute, longer than
        # DEADLINE. (Measured: connect_peer every 2 s for 12 s, to a peer
        # that closes each connection at once, made 2 connections with
        # the defaults, 11 with these.)
        "min_reconnect_time": 1,
        "max_failcount": 100,
        # Nothing may leave loopback: no local peer discovery multicast,
        # no port mapping.
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "alert_mask": lt.alert_category.error
        | lt.alert_category.status
        | lt.alert_category.storage
        | lt.alert_category.dht
        | lt.alert_category.dht_operation,
    }


def session(bootstrap, peers=False):
    """A session on the private DHT; with peers, its alerts say what each
    peer connection did too, message by message."""
    s = settings(bootstrap)
    if peers:
        s["alert_mask"] |= lt.alert_category.connect | lt.alert_category.peer | \
            lt.alert_category.peer_log | lt.alert_category.performance_warning
    if os.environ.get("LT_TCP") == "1":
        s["enable_outgoing_utp"] = False
    if os.environ.get("LT_UTP") == "1":
        s["enable_outgoing_tcp"] = False
        s["enable_incoming_tcp"] = False
    return lt.session(s)


def torrent_state(h):
    """Describes a torrent's state and its peers, for a failure."""
    st = h.status()
    out = ["lt.py: torrent %s: %d of %d pieces, %d peers (%d seeds), %d B down, %d B/s\n" % (
        st.state, st.num_pieces, h.torrent_file().num_pieces() if h.torrent_file() else -1,
        st.num_peers, st.num_seeds, st.total_payload_download, st.download_payload_rate)]
    for p in h.get_peer_info():
        out.append("lt.py:   peer %s:%d %r flags %#x source %#x connection %d: %d pieces, %d B down, "
                   "%d requests in flight, %d hash fails, rtt %d ms, "
                   "last request %s, last active %s\n" % (
                       p.ip[0], p.ip[1], p.client, p.flags, p.source, p.connection_type, p.num_pieces,
                       p.total_download, p.download_queue_length,
                       p.num_hashfails, p.rtt, p.last_request, p.last_active))
    return "".join(out)


def alerts(ses, deadline, what):
    """Yields the session's alerts, and None at least every half second,
    until deadline (a time.monotonic()); then fails, saying what the caller
    waited for."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            fail("timed out waiting for " + what)
        ses.wait_for_alert(int(min(left, 0.5) * 1000))
        for a in ses.pop_alerts():
            line = "%7.3f %s: %s" % (time.monotonic() - START, a.what(), a.message())
            history.append(line)
            if isinstance(a, (lt.peer_disconnected_alert, lt.peer_error_alert)):
                closes.append(line)
            if isinstance(a, (lt.listen_failed_alert, lt.torrent_error_alert, lt.file_error_alert)):
                fail(a.message())
            yield a
        yield None


def bootstrapped(ses, deadline):
    """Waits until libtorrent's DHT has bootstrapped."""
    for a in alerts(ses, deadline, "the DHT bootstrap"):
        if isinstance(a, lt.dht_bootstrap_alert):
            return


def addr(s):
    host, port = s.rsplit(":", 1)
    return host, int(port)


def in_table(ses, node, deadline):
    """Waits until the DHT node at address node is in libtorrent's routing
    table: add_dht_node only pings it, and a lookup started before the
    answer would not ask it."""
    warnings.simplefilter("ignore", DeprecationWarning)  # dht_state, the one way to our node ID here
    nid = lt.sha1_hash(ses.dht_state()[b"node-id"][0][:20])
    want = addr(node)
    ses.dht_live_nodes(nid)
    for a in alerts(ses, deadline, "the node " + node + " in the routing table"):
        if isinstance(a, lt.dht_live_nodes_alert):
            if any(tuple(n["endpoint"]) == want for n in a.nodes):
                return
            time.sleep(0.1)
            ses.dht_live_nodes(nid)


# libtorrent's ed25519 (orlp/ed25519) takes a 64-byte secret key that is not
# Go's seed ‖ public key but the SHA-512 of the seed, its first half clamped
# into the scalar, and the public key beside it. The Python bindings do not
# export ed25519_create_keypair, so lt.py derives both from the seed here:
# the scalar times the base point of edwards25519 (RFC 8032), in affine
# coordinates, slow and plain.
P = 2**255 - 19
D = -121665 * pow(121666, -1, P) % P
BASE = (
    15112221349535400772501151409588531511454012693041857206046113283949847762202,
    46316835694926478169428394003475163141307993866256225615783033603165251855960,
)


def edwards_add(a, b):
    """The sum of two points of -x² + y² = 1 + d·x²·y²."""
    (x1, y1), (x2, y2) = a, b
    t = D * x1 * x2 * y1 * y2 % P
    return (
        (x1 * y2 + x2 * y1) * pow(1 + t, -1, P) % P,
        (y1 * y2 + x1 * x2) * pow(1 - t, -1, P) % P,
    )


def secret_key(seed):
    """The 64-byte secret key of seed, as orlp's ed25519_create_keypair."""
    h = bytearray(hashlib.sha512(seed).digest())
    h[0] &= 248
    h[31] &= 127
    h[31] |= 64
    return bytes(h)


def public_key(sk):
    """The 32-byte public key of a secret key: y, and x's low bit on top."""
    n = int.from_bytes(sk[:32], "little")
    point, q = (0, 1), BASE
    while n:
        if n & 1:
            point = edwards_add(point, q)
        q = edwards_add(q, q)
        n >>= 1
    x, y = point
    return (y | (x & 1) << 255).to_bytes(32, "little")


# A DNS message's answers, decoded by hand (RFC 1035): names with their
# compression pointers, TXT character-strings.
TYPES = {1: "A", 2: "NS", 5: "CNAME", 16: "TXT", 28: "AAAA", 33: "SRV", 65: "HTTPS"}


def dns_name(msg, i):
    """Returns the name at msg[i:] and the offset after it."""
    labels, end, jumps = [], None, 0
    while True:
        n = msg[i]
        if n & 0xC0 == 0xC0:
            jumps += 1
            if jumps > 64:
                raise ValueError("name compression loop")
            if end is None:
                end = i + 2
            i = (n & 0x3F) << 8 | msg[i + 1]
        elif n & 0xC0:
            raise ValueError("label type %#x" % n)
        elif n == 0:
            return ".".join(labels), (i + 1 if end is None else end)
        else:
            labels.append(msg[i + 1 : i + 1 + n].decode())
            i += 1 + n


def dns_answers(msg):
    qd, an = int.from_bytes(msg[4:6], "big"), int.from_bytes(msg[6:8], "big")
    i = 12
    for _ in range(qd):
        _, i = dns_name(msg, i)
        i += 4
    out = []
    for _ in range(an):
        name, i = dns_name(msg, i)
        typ, cls, ttl, n = int.from_bytes(msg[i : i + 2], "big"), int.from_bytes(msg[i + 2 : i + 4], "big"), \
            int.from_bytes(msg[i + 4 : i + 8], "big"), int.from_bytes(msg[i + 8 : i + 10], "big")
        i += 10
        rdata = msg[i : i + n]
        if len(rdata) != n:
            raise ValueError("record data past the end")
        i += n
        if typ == 16:
            data, j = [], 0
            while j < n:
                data.append(rdata[j + 1 : j + 1 + rdata[j]].decode())
                j += 1 + rdata[j]
        else:
            data = rdata.hex()
        out.append({"name": name, "type": TYPES.get(typ, "TYPE%d" % typ),
                    "class": "IN" if cls == 1 else "CLASS%d" % cls, "ttl": ttl, "data": data})
    return out


def get(bootstrap, pubkey_hex, node=None):
    deadline = time.monotonic() + DEADLINE
    k = bytes.fromhex(pubkey_hex)
    ses = session(bootstrap)
    if node:
        ses.add_dht_node(addr(node))
    bootstrapped(ses, deadline)
    if node:
        in_table(ses, node, deadline)
    ses.dht_get_mutable_item(k, b"")
    for a in alerts(ses, deadline, "the item"):
        # Alerts before the authoritative one report items as the lookup
        # finds them; the last says what it settled on.
        if isinstance(a, lt.dht_mutable_item_alert) and a.authoritative:
            try:
                v = a.item["value"]
            except RuntimeError:  # the bindings' answer for no item
                fail("no item for " + pubkey_hex)
            if not isinstance(v, bytes):
                fail("v is %r, not a string" % (v,))
            if bytes(a.key) != k:
                fail("item of key %s, asked for %s" % (bytes(a.key).hex(), pubkey_hex))
            return {
                "target": hashlib.sha1(k).hexdigest(),
                "seq": a.seq,
                "sig": bytes(a.signature).hex(),
                "v": v.hex(),
                "answers": dns_answers(v),
            }


def put(bootstrap, seed_hex, v_hex):
    deadline = time.monotonic() + DEADLINE
    sk = secret_key(bytes.fromhex(seed_hex))
    pk = public_key(sk)
    v = bytes.fromhex(v_hex)
    ses = session(bootstrap)
    bootstrapped(ses, deadline)
    # libtorrent reads the item first and signs with the seq it found + 1.
    ses.dht_put_mutable_item(sk, pk, v, b"")
    for a in alerts(ses, deadline, "the put"):
        if isinstance(a, lt.dht_put_alert):
            return {
                "key": bytes(a.public_key).hex(),
                "target": hashlib.sha1(bytes(a.public_key)).hexdigest(),
                "seq": a.seq,
                "sig": bytes(a.signature).hex(),
                "v": v.hex(),
                "nodes": a.num_success,
            }


def fetch(bootstrap, magnet, out, peer=None):
    deadline = time.monotonic() + DEADLINE
    ses = session(bootstrap, peers=True)
    if not peer:
        bootstrapped(ses, deadline)
    atp = lt.parse_magnet_uri(magnet)
    atp.save_path = out
    added = time.monotonic()
    h = ses.add_torrent(atp)
    describe.append(lambda: torrent_state(h))
    connected = 0.0
    # libtorrent has a piece once it passed its hash check and was
    # written; torrent_finished_alert can come before the last writes.
    metadata = None
    for _ in alerts(ses, deadline, "every piece"):
        # A peer given by address is given again while libtorrent has no
        # connection, as a DHT or tracker would hand it out again: one
        # attempt that fails on a loaded machine (a uTP connect timing out)
        # is otherwise the only one. libtorrent dials it within a second
        # of the last connection's end (min_reconnect_time in settings).
        now = time.monotonic()
        if peer and h.status().num_peers == 0 and now - connected > 2:
            h.connect_peer(addr(peer))
            connected = now
        ti = h.torrent_file()
        if ti and metadata is None:
            metadata = time.monotonic()
        if ti and h.status().num_pieces == ti.num_pieces():
            done = time.monotonic()
            return {"name": ti.name(), "size": ti.total_size(),
                    "seconds": done - added, "metadata_seconds": metadata - added}


def seed(bootstrap, torrent, out):
    ses = session(bootstrap)
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(torrent)
    atp.save_path = out
    h = ses.add_torrent(atp)
    done = threading.Event()

    def wait_stdin():
        sys.stdin.read()
        done.set()

    threading.Thread(target=wait_stdin, daemon=True).start()
    deadline = time.monotonic() + DEADLINE
    for a in alerts(ses, deadline, "the check of the files"):
        if isinstance(a, lt.torrent_checked_alert):
            break
    if not h.status().is_seeding:
        fail("%s: the files in %s do not match the torrent" % (torrent, out))
    h.force_dht_announce()
    print(json.dumps({"port": ses.listen_port()}), flush=True)
    while not done.wait(0.5):
        for a in ses.pop_alerts():
            if isinstance(a, (lt.torrent_error_alert, lt.file_error_alert)):
                fail(a.message())


def main():
    cmds = {"get": (get, 2, 3), "put": (put, 3, 3), "fetch": (fetch, 3, 4), "seed": (seed, 3, 3)}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        fail("usage: lt.py get|put|fetch|seed ...")
    f, lo, hi = cmds[sys.argv[1]]
    args = sys.argv[2:]
    if not lo <= len(args) <= hi:
        fail("usage: see lt.py's comment")
    res = f(*args)
    if res is not None:
        print(json.dumps(res), flush=True)


main()
