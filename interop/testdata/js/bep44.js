// bep44.js: an independent BEP 44 and DNS implementation (npm's
// bittorrent-dht and dns-packet, ed25519 by Node's crypto) that relay's
// interop tests run against. It joins a DHT through one bootstrap node on
// 127.0.0.1 and prints one JSON object on stdout.
//
//   node bep44.js get HOST:PORT PUBKEY_HEX
//       reads the mutable item of PUBKEY (no salt), checks its signature
//       itself, and prints {seq, sig, v, answers} (hex; answers decoded by
//       dns-packet)
//   node bep44.js put HOST:PORT SEED_HEX SEQ RECORDS_JSON
//       builds a DNS packet of TXT records ([{name, data: [strings]}]) with
//       dns-packet, signs it with SEED and stores it; prints {target, nodes, v}
//   node bep44.js decode PACKET_HEX
//       prints the answers of a DNS packet
//   node bep44.js bench-get HOST:PORT PUBKEY_HEX N
//       joins, then gets the item N times; prints {ms, msgs, answered}
//       per get: its time, the queries it sent and the nodes that answered
//   node bep44.js bench-put HOST:PORT SEED_HEX N
//       joins, then stores N items of 500 bytes, each with a higher seq;
//       prints {ms, msgs, answered} per put and {nodes}, the nodes that
//       took each on average
import crypto from 'node:crypto'
import DHT from 'bittorrent-dht'
import bencode from 'bencode'
import dnsPacket from 'dns-packet'

// DER prefixes that turn a raw 32-byte ed25519 key into SPKI / PKCS#8.
const spkiPrefix = Buffer.from('302a300506032b6570032100', 'hex')
const pkcs8Prefix = Buffer.from('302e020100300506032b657004220420', 'hex')

function publicKey (raw) {
  return crypto.createPublicKey({ key: Buffer.concat([spkiPrefix, raw]), format: 'der', type: 'spki' })
}

function verify (sig, msg, k) {
  return crypto.verify(null, msg, publicKey(Buffer.from(k)), Buffer.from(sig))
}

// signingBuffer is BEP 44's: the bencoded dictionary {seq, v} without its
// outer d...e.
function signingBuffer (seq, v) {
  const b = Buffer.from(bencode.encode({ seq, v }))
  return b.subarray(1, b.length - 1)
}

function answers (v) {
  return dnsPacket.decode(Buffer.from(v)).answers.map(a => ({
    name: a.name,
    type: a.type,
    class: a.class,
    ttl: a.ttl,
    data: a.type === 'TXT' ? a.data.map(s => Buffer.from(s).toString()) : a.data
  }))
}

function fail (msg) {
  process.stderr.write('bep44.js: ' + msg + '\n')
  process.exit(1)
}

// counter counts the queries a node sends and the distinct nodes that
// answer them, by wrapping its KRPC socket's query.
function counter (dht) {
  const sock = dht._rpc.socket
  const query = sock.query.bind(sock)
  const c = { msgs: 0, answered: 0, seen: new Set() }
  sock.query = (peer, q, cb) => {
    c.msgs++
    return query(peer, q, (err, ...rest) => {
      const who = peer.host + ':' + peer.port
      if (!err && !c.seen.has(who)) {
        c.seen.add(who)
        c.answered++
      }
      if (cb) cb(err, ...rest)
    })
  }
  // A new operation counts its answering nodes afresh.
  c.next = () => c.seen.clear()
  return c
}

function open (bootstrap) {
  return new Promise((resolve, reject) => {
    const dht = new DHT({ bootstrap: [bootstrap], verify, host: '127.0.0.1' })
    dht.on('error', reject)
    dht.listen(0, '127.0.0.1', () => {})
    dht.once('ready', () => resolve(dht))
  })
}

const [cmd, ...args] = process.argv.slice(2)
const timer = setTimeout(() => fail('timed out'), 30000)

if (cmd === 'decode') {
  console.log(JSON.stringify({ answers: answers(Buffer.from(args[0], 'hex')) }))
  process.exit(0)
} else if (cmd === 'get') {
  const k = Buffer.from(args[1], 'hex')
  const target = crypto.createHash('sha1').update(k).digest()
  const dht = await open(args[0])
  dht.get(target, (err, res) => {
    if (err) fail(err.message)
    if (!res) fail('no item for ' + target.toString('hex'))
    // Check again here, whatever the library did.
    if (!Buffer.from(res.k).equals(k)) fail('item signed by another key')
    if (!verify(res.sig, signingBuffer(res.seq, res.v), k)) fail('bad signature')
    console.log(JSON.stringify({
      target: target.toString('hex'),
      seq: res.seq,
      sig: Buffer.from(res.sig).toString('hex'),
      v: Buffer.from(res.v).toString('hex'),
      answers: answers(res.v)
    }))
    clearTimeout(timer)
    dht.destroy()
  })
} else if (cmd === 'put') {
  const seed = Buffer.from(args[1], 'hex')
  const priv = crypto.createPrivateKey({ key: Buffer.concat([pkcs8Prefix, seed]), format: 'der', type: 'pkcs8' })
  const k = crypto.createPublicKey(priv).export({ format: 'der', type: 'spki' }).subarray(spkiPrefix.length)
  const seq = Number(args[2])
  const records = JSON.parse(args[3])
  const v = dnsPacket.encode({
    type: 'response',
    id: 0,
    flags: dnsPacket.AUTHORITATIVE_ANSWER,
    answers: records.map(r => ({ type: 'TXT', class: 'IN', name: r.name, ttl: 300, data: r.data }))
  })
  const dht = await open(args[0])
  dht.put({ k, seq, v, sign: buf => crypto.sign(null, buf, priv) }, (err, target, n) => {
    if (err) fail(err.message)
    console.log(JSON.stringify({ target: target.toString('hex'), nodes: n, v: v.toString('hex') }))
    clearTimeout(timer)
    dht.destroy()
  })
} else if (cmd === 'bench-get') {
  const k = Buffer.from(args[1], 'hex')
  const target = crypto.createHash('sha1').update(k).digest()
  const n = Number(args[2])
  const dht = await open(args[0])
  const get = () => new Promise((resolve, reject) => dht.get(target, { cache: false }, (err, res) => {
    if (err) reject(err)
    else if (!res) reject(new Error('no item'))
    else resolve(res)
  }))
  try {
    await get() // warm the routing table, as relay's side is
    const c = counter(dht)
    const start = process.hrtime.bigint()
    for (let i = 0; i < n; i++) {
      c.next()
      await get()
    }
    const ms = Number(process.hrtime.bigint() - start) / 1e6 / n
    console.log(JSON.stringify({ ms, msgs: c.msgs / n, answered: c.answered / n }))
  } catch (err) {
    fail(err.message)
  }
  clearTimeout(timer)
  dht.destroy()
} else if (cmd === 'bench-put') {
  const seed = Buffer.from(args[1], 'hex')
  const priv = crypto.createPrivateKey({ key: Buffer.concat([pkcs8Prefix, seed]), format: 'der', type: 'pkcs8' })
  const k = crypto.createPublicKey(priv).export({ format: 'der', type: 'spki' }).subarray(spkiPrefix.length)
  const n = Number(args[2])
  const dht = await open(args[0])
  const v = crypto.randomBytes(500)
  let seq = Date.now() * 1000
  let nodes = 0
  const put = () => new Promise((resolve, reject) => {
    seq++
    dht.put({ k, seq, v, sign: buf => crypto.sign(null, buf, priv) }, (err, target, got) => {
      if (err) reject(err)
      else resolve(got)
    })
  })
  try {
    await put()
    const c = counter(dht)
    const start = process.hrtime.bigint()
    for (let i = 0; i < n; i++) {
      c.next()
      nodes += await put()
    }
    const ms = Number(process.hrtime.bigint() - start) / 1e6 / n
    console.log(JSON.stringify({ ms, nodes: nodes / n, msgs: c.msgs / n, answered: c.answered / n }))
  } catch (err) {
    fail(err.message)
  }
  clearTimeout(timer)
  dht.destroy()
} else {
  fail('usage: bep44.js get|put|decode ...')
}
