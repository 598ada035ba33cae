// webtorrent.mjs: npm's webtorrent 3 (a BitTorrent client of its own, over
// TCP and uTP) fetching from one peer relay runs. Run with
// `node --import ./nowebrtc.mjs webtorrent.mjs ...` (see nowebrtc.mjs).
//
//   node ... webtorrent.mjs fetch MAGNET HOST:PORT OUT_DIR [both|tcp]
//       fetches the torrent into OUT_DIR from the peer at HOST:PORT alone
//       (no DHT, trackers or local discovery), with uTP and TCP as
//       webtorrent does by default (both), or TCP alone (tcp); prints
//       {wireMs, wireType, firstByteMs, doneMs, bytes}: when the first
//       peer connection was up and of which kind, when the first block
//       arrived, when the download was done, in milliseconds from the
//       start
import WebTorrent from 'webtorrent'

function fail (msg) {
  process.stderr.write('webtorrent.mjs: ' + msg + '\n')
  process.exit(1)
}

const [cmd, magnet, peer, out, mode = 'both'] = process.argv.slice(2)
if (cmd !== 'fetch' || !magnet || !peer || !out) fail('usage: fetch MAGNET HOST:PORT OUT_DIR [both|tcp]')

const start = Date.now()
const since = () => Date.now() - start
const client = new WebTorrent({
  dht: false,
  tracker: false,
  lsd: false,
  webSeeds: false,
  natUpnp: false,
  natPmp: false,
  utp: mode !== 'tcp',
  torrentPort: 0
})
client.on('error', err => fail(String(err)))
const res = { wireMs: -1, wireType: '', firstByteMs: -1, doneMs: -1, bytes: 0 }
const torrent = client.add(magnet, { path: out, announce: [] })
torrent.on('error', err => fail(String(err)))
// webtorrent dials a peer it is given over uTP first when uTP is on, and
// over TCP once uTP failed (retrying uTP after 1, 5 and 15 s).
const add = () => torrent.addPeer(peer)
if (torrent.infoHash) add()
else torrent.once('infoHash', add)
torrent.on('wire', wire => {
  if (res.wireMs < 0) {
    res.wireMs = since()
    res.wireType = wire.type || ''
  }
})
torrent.on('download', () => {
  if (res.firstByteMs < 0) res.firstByteMs = since()
})
torrent.on('done', () => {
  res.doneMs = since()
  res.bytes = torrent.length
  process.stdout.write(JSON.stringify(res) + '\n')
  client.destroy(() => process.exit(0))
})
