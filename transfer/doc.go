// Package transfer moves relay bundles as BitTorrent v1 torrents: it makes
// a bundle from released files (deterministically: the same files give the
// same infohash), serves bundles from a data folder, and fetches a bundle
// named by a release record from whoever has it (peers found in the DHT,
// peers given directly, web seeds), checking the manifest against the
// record before any file is requested and every file against the manifest.
//
// Layout. Bundles live under a root folder (BundlesDir of a data folder),
// one folder per infohash:
//
//	<root>/<infohash>/<name>/          the torrent's files: relay.json and the released files
//	<root>/<infohash>/<name>.torrent   the metainfo (the info dictionary only)
//	<root>/<infohash>/.relay-state     which pieces and files relay has verified
//
// where <name> is "<channel>-<version>" (BundleName). A folder
// <root>/<infohash> is also a BEP 19 web seed root as it stands: serve it
// over HTTP and put its URL in the record's ws field.
//
// The package never prints, never reads flags or the environment and never
// exits; it logs through the *slog.Logger it is given (nil is silent). It
// never reads a whole bundle into memory: files are hashed while they are
// copied or while they stream in. It never trusts data it did not write or
// verify itself, and never downloads more than the record's size.
package transfer
