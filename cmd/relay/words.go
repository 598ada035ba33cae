package main

import "strconv"

// count says n of noun in English: "1 peer", "2 peers", "0 peers". noun
// takes an s in the plural, as every noun relay counts does.
func count(n int, noun string) string {
	s := strconv.Itoa(n) + " " + noun
	if n != 1 {
		s += "s"
	}
	return s
}
