// Package untrusted makes strings that came from the network (peers, web
// seeds, DHT nodes) or from a manifest safe to put in an error, a log
// line or a terminal: a string that holds terminal escape sequences,
// carriage returns or newlines could otherwise rewrite what the user sees
// ("relay: verified" over an error), or forge lines in a log.
//
// It never rejects anything: it escapes. It must never be the only check
// of data relay acts on; it is for what relay shows.
package untrusted

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxLen is the most bytes String keeps of a string, before its escapes.
const MaxLen = 256

// Escape returns s with every character that is not printable escaped as
// in a Go string literal: control characters (\x1b, \r, \n, \t),
// Unicode format characters such as the bidirectional overrides
// (\u202e), and bytes that are not UTF-8 (\xff). Printable characters and
// the ASCII space are kept.
func Escape(s string) string {
	i := strings.IndexFunc(s, func(r rune) bool { return !printable(r) })
	if i < 0 && utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for len(s) > 0 {
		r, n := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && n == 1:
			b.WriteString(`\x`)
			b.WriteString(strconv.FormatUint(uint64(s[0])>>4, 16))
			b.WriteString(strconv.FormatUint(uint64(s[0])&0xf, 16))
		case printable(r):
			b.WriteString(s[:n])
		default:
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
		}
		s = s[n:]
	}
	return b.String()
}

// String returns Escape of s, cut to its first MaxLen bytes (at a
// character's boundary) with "..." after them when longer: the most a
// peer's string takes of an error or a log line.
func String(s string) string {
	if len(s) > MaxLen {
		cut := MaxLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return Escape(s)
}

func printable(r rune) bool {
	return r == ' ' || unicode.IsPrint(r) && r != utf8.RuneError
}
