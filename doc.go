// Package relay is the library behind the relay command and the update
// package: the three roles of docs/spec (publisher, watcher, seeder) over
// the dht and transfer packages. A publisher bundles files, signs a
// release record and stores it, and seeds until others hold the bundle; a
// watcher resolves a key,
// runs the whole verification chain, fetches, verifies and installs,
// persisting what it accepted; a seeder serves bundles, follows keys and
// keeps their records alive.
//
// It never prints, never reads flags or the environment, and never exits:
// it takes a context for network work, a *slog.Logger (nil is silent), and
// reports progress and events through callbacks.
package relay
