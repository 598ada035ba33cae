package untrusted

import (
	"strings"
	"testing"
	"unicode"
)

func TestEscape(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"404 Not Found", "404 Not Found"},
		{"héllo wörld ✓", "héllo wörld ✓"},
		{"\x1b[2K\rrelay: verified", `\x1b[2K\rrelay: verified`},
		{"a\nb\tc", `a\nb\tc`},
		{"\u202egnp.exe", `\u202egnp.exe`},
		{"bad \xff byte", `bad \xff byte`},
		{"\x00\x7f\u0085", `\x00\x7f\u0085`},
		{`back\slash`, `back\slash`},
	} {
		if got := Escape(tc.in); got != tc.want {
			t.Errorf("Escape(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestStringBounds(t *testing.T) {
	long := strings.Repeat("é", MaxLen) // 2 bytes each
	got := String(long)
	if !strings.HasSuffix(got, "...") || len(got) > MaxLen+3 {
		t.Fatalf("String of %d bytes gave %d bytes: %q...", len(long), len(got), got[:20])
	}
	if strings.ContainsRune(got, '\uFFFD') {
		t.Fatal("String cut a character in two")
	}
}

func FuzzEscape(f *testing.F) {
	f.Add("\x1b[31mred\x1b[0m\r\n")
	f.Add("\u202e\xff")
	f.Fuzz(func(t *testing.T, s string) {
		for _, r := range String(s) {
			if r != ' ' && !unicode.IsPrint(r) {
				t.Fatalf("String(%q) holds %U", s, r)
			}
		}
	})
}
