// Package record is relay's wire format as pure data: the release record
// of a channel, the DNS packet that carries the records of every channel
// (pkarr's format), the signed packet stored as a BEP 44 mutable item, the
// bundle manifest, and the checks a watcher runs on each of them.
//
// It never touches the network or files and never reads the clock: the
// time is always an argument.
package record
