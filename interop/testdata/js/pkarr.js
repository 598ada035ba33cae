// pkarr.js: pkarr's own JavaScript implementation (npm's pkarr 1.3.0: its
// SignedPacket, its DHT client, its z-base-32) run against relay. It joins a
// DHT through one bootstrap node on 127.0.0.1 and prints one JSON object on
// stdout.
//
//   node pkarr.js resolve HOST:PORT Z32KEY NAME...
//       resolves the key's signed packet with pkarr's DHT client (full
//       lookup), has SignedPacket check the signature, and prints
//       {key, seq, body, records}: the key as pkarr writes it, the body
//       (sig ‖ seq ‖ packet, hex), and for each NAME the strings of its TXT
//       records, as pkarr's resourceRecords(NAME) finds them
//   node pkarr.js body Z32KEY BODY_HEX NAME...
//       the same from a pkarr relay body, read with SignedPacket.fromBytes
//   node pkarr.js publish HOST:PORT SEED_HEX RECORDS_JSON
//       signs a packet of TXT records ([{name, data: [strings]}], names as
//       a user writes them to pkarr, relative or not) with pkarr's
//       SignedPacket and stores it with pkarr's DHT client; prints {key, seq,
//       nodes}
//   node pkarr.js relayput RELAY_URL SEED_HEX RECORDS_JSON
//       signs such a packet and stores it through a pkarr HTTP relay with
//       pkarr's client (Pkarr.relayPut); prints {key, seq, status}
//   node pkarr.js relayget RELAY_URL Z32KEY NAME...
//       reads the key's packet through a pkarr HTTP relay with pkarr's
//       client (Pkarr.relayGet, which verifies it); prints as resolve does
//   node pkarr.js server HOST:PORT
//       runs pkarr's own relay server (pkarr/lib/relay.js) on 127.0.0.1
//       with pkarr's DHT client joined through HOST:PORT; prints {url},
//       then serves until stdin closes
import { Pkarr, SignedPacket, z32 } from 'pkarr'
import DHT from 'pkarr/lib/dht.js'
import Server from 'pkarr/lib/relay.js'

function fail (msg) {
  process.stderr.write('pkarr.js: ' + msg + '\n')
  process.exit(1)
}

// records prints what pkarr finds at each name.
function records (signed, names) {
  const out = {}
  for (const name of names) {
    out[name] = signed.resourceRecords(name).map(rr => ({
      name: rr.name,
      type: rr.type,
      class: rr.class,
      ttl: rr.ttl,
      data: rr.type === 'TXT' ? rr.data.map(s => Buffer.from(s).toString()) : rr.data
    }))
  }
  return out
}

function show (signed, names) {
  return {
    key: z32.encode(signed.publicKey()),
    seq: signed.timestamp(),
    body: Buffer.from(signed.bytes()).toString('hex'),
    records: records(signed, names)
  }
}

// open joins the DHT through bootstrap ("host:port") with pkarr's client; it
// keeps no routing table on disk.
function open (bootstrap) {
  const [host, port] = bootstrap.split(':')
  const noStorage = { loadRoutingTable () {}, saveRoutingTable () {} }
  const dht = new DHT({ bootstrap: [{ host, port: Number(port) }], storage: noStorage, host: '127.0.0.1' })
  return new Promise((resolve, reject) => {
    dht._dht.on('error', reject)
    dht._dht.listen(0, '127.0.0.1')
    dht._dht.once('ready', () => resolve(dht))
  })
}

// sign signs TXT records ([{name, data}]) with the key of seed (hex).
function sign (seed, recordsJSON) {
  const keypair = Pkarr.generateKeyPair(Buffer.from(seed, 'hex'))
  const signed = SignedPacket.fromPacket(keypair, {
    type: 'response',
    id: 0,
    flags: 0,
    answers: JSON.parse(recordsJSON).map(r => ({ type: 'TXT', class: 'IN', name: r.name, ttl: 300, data: r.data }))
  })
  return { keypair, signed }
}

const [cmd, ...args] = process.argv.slice(2)
const timer = setTimeout(() => fail('timed out'), 30000)

try {
  if (cmd === 'resolve') {
    const [bootstrap, key, ...names] = args
    const dht = await open(bootstrap)
    const res = await dht.get(z32.decode(key), { fullLookup: true })
    if (!res) fail('no packet for ' + key)
    const signed = SignedPacket.fromBep44Args(res) // throws on a bad signature
    console.log(JSON.stringify({ ...show(signed, names), nodes: res.nodes.length }))
    await dht.destroy()
  } else if (cmd === 'body') {
    const [key, body, ...names] = args
    const signed = SignedPacket.fromBytes(z32.decode(key), Buffer.from(body, 'hex'))
    console.log(JSON.stringify(show(signed, names)))
  } else if (cmd === 'publish') {
    const [bootstrap, seed, recordsJSON] = args
    const { keypair, signed } = sign(seed, recordsJSON)
    const dht = await open(bootstrap)
    const { nodes } = await dht.put(signed.bep44Args())
    console.log(JSON.stringify({ key: z32.encode(keypair.publicKey), seq: signed.timestamp(), nodes: nodes.length }))
    await dht.destroy()
  } else if (cmd === 'relayput') {
    const [relay, seed, recordsJSON] = args
    const { keypair, signed } = sign(seed, recordsJSON)
    const res = await Pkarr.relayPut(relay, signed)
    console.log(JSON.stringify({ key: z32.encode(keypair.publicKey), seq: signed.timestamp(), status: res.status }))
  } else if (cmd === 'relayget') {
    const [relay, key, ...names] = args
    const signed = await Pkarr.relayGet(relay, z32.decode(key)) // throws on a bad signature
    console.log(JSON.stringify(show(signed, names)))
  } else if (cmd === 'server') {
    if (cmd !== 'server') clearTimeout(timer)
    const [bootstrap] = args
    const dht = await open(bootstrap)
    const server = new Server({ dht })
    await new Promise(resolve => server._server.listen(0, '127.0.0.1', resolve))
    console.log(JSON.stringify({ url: 'http://127.0.0.1:' + server._server.address().port }))
    process.stdin.resume()
    process.stdin.on('end', async () => {
      await server.close()
      process.exit(0)
    })
  } else {
    fail('usage: pkarr.js resolve|body|publish|relayput|relayget|server ...')
  }
} catch (err) {
  fail(err.message)
}
if (cmd !== 'server') clearTimeout(timer)
