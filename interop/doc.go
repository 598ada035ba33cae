// Package interop holds relay's interoperability tests: real relay code on a
// local DHT on 127.0.0.1 against implementations nobody here wrote (aria2,
// libtorrent-rasterbar through its Python bindings, npm's bittorrent-dht and
// dns-packet). It has no code of its own besides the tests and the scripts
// under testdata that drive those implementations; .ci/run installs the
// independent tools, and each test skips, saying which tool is missing, only
// when it cannot be installed.
package interop
