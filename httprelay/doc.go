// Package httprelay speaks pkarr's HTTP relay API, for machines that
// cannot reach the DHT over UDP (corporate networks, containers, web
// pages): GET /<z32 key> answers a key's signed packet as a pkarr relay
// body (signature ‖ seq ‖ DNS packet), PUT /<z32 key> stores one.
//
// Client asks any number of relays at once and keeps the highest valid
// seq, as a DHT lookup does; it trusts a relay no more than a DHT node:
// every answer is verified against the key asked for, bodies are read up
// to MaxBody bytes, every request has a deadline, and what a relay says
// reaches errors escaped. Server answers the API from a DHT node: from a
// cache of bounded size that it keeps fresh, storing through to the DHT,
// with a rate limit per client address and CORS for web pages.
//
// It never prints, never reads flags or the environment and never exits;
// a Client contacts only the relays it was given.
package httprelay
