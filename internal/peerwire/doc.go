// Package peerwire is a lean BitTorrent v1 peer for one torrent at a
// time: the peer wire (BEP 3) with the extension protocol (BEP 10) and
// the fast extension (BEP 6), the info from peers (BEP 9), peer
// exchange (BEP 11, ut_pex: see Config.NoPEX, DownloadOptions.OnPEXPeer), a download
// that verifies each piece's SHA-1 in memory before it writes it, and
// serving what a torrent has.
//
// It exists so that relay's fetch path (the update package, relay fetch
// and relay watch) need not link the torrent library's whole client
// (WebRTC, SQLite, OpenTelemetry: about 13 MB of an embedding program),
// and to move a bundle with less work per block than that client does.
// It imports only the standard library and the torrent library's codecs
// (bencode, metainfo, peer_protocol).
//
// A Client holds torrents (Add) and their peers. FetchInfo gets a
// torrent's info dictionary by its infohash (dialling again, at most 3
// times, a peer that closes the connection before its extended
// handshake: a seeder that still holds a connection of the same peer id
// refuses a new one so). The connections that brought the info, or
// offered it, stay open for 30 s after it returns: the download of the
// torrent (or Torrent.Connect) takes each over instead of dialling its
// address again, replaying what the peer sent meanwhile (its bitfield,
// its extended handshake) and telling it the torrent's pieces as haves,
// the info fetch having announced HaveNone; those no dial takes close.
// Torrent.Download fetches the
// pieces a torrent lacks from the peers it is given, with requests
// pipelined to each peer's reqq, rarest pieces first (in index order from
// seeds, so that a reader of the files in order can follow), an endgame,
// bounded memory, and peers that send bad pieces banned; and from BEP 19
// web seeds (DownloadOptions.WebSeeds) beside peers: whole pieces by HTTP
// range requests, checked before they join a piece, at most
// Config.WebSeedRequests at a time, each read bounded to the range asked
// and dropped when it brings nothing for Config.SnubTimeout, peers taking
// over a slow web seed's pieces, and a web seed that answers wrong (or
// fails 3 times in a row) dropped for the download; Client.Serve
// accepts peers for the client's torrents and answers their requests
// within upload slots and an upload rate, or, for a torrent's first seed,
// in initial seeding (TorrentOptions.InitialSeeding, BEP 16's
// super-seeding: each peer offered one piece at a time, the next once it
// passed the last on, so that each piece leaves the seed about once).
// Extensions (Config.Extensions)
// carry other BEP 10 messages, such as relay_record
// (docs/spec/relay-record.md).
//
// The package never prints, reads the environment or exits; it never
// holds more than Config.InFlight bytes of pieces in memory, reads no
// message longer than its type allows, writes no byte to Storage that did
// not verify, and every goroutine it starts ends with the context of the
// call that started it.
package peerwire
