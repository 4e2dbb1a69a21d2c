package proxy

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestNormalizePath(t *testing.T) {
	tests := []struct {
		raw, dec, enc string
	}{
		{"/", "/", "/"},
		{"/a/b", "/a/b", "/a/b"},
		{"/a/b/", "/a/b/", "/a/b/"},
		{"//a///b", "/a/b", "/a/b"},
		{"/a/./b", "/a/b", "/a/b"},
		{"/a/.", "/a/", "/a/"},
		{"/a/b/../c", "/a/c", "/a/c"},
		{"/a/b/..", "/a/", "/a/"},
		{"/a/%2e%2e/b", "/b", "/b"},
		{"/a/%2E/b", "/a/b", "/a/b"},
		{"/%41%62c", "/Abc", "/Abc"},
		{"/caf%C3%A9", "/caf\u00e9", "/caf%C3%A9"},
		{"/a%20b", "/a b", "/a%20b"},
		{"/a/..%2Fb", "", ""}, // encoded slash
	}
	for _, tt := range tests {
		dec, enc, err := NormalizePath(nil, nil, []byte(tt.raw), false)
		if tt.dec == "" {
			if err == nil {
				t.Errorf("%q accepted as %q", tt.raw, dec)
			}
			continue
		}
		if err != nil || string(dec) != tt.dec || string(enc) != tt.enc {
			t.Errorf("%q: got %q %q %v, want %q %q", tt.raw, dec, enc, err, tt.dec, tt.enc)
		}
	}
}

func TestNormalizePathRefusesAmbiguity(t *testing.T) {
	tests := []struct {
		raw  string
		want error
	}{
		{"a/b", ErrPathNotOrigin},
		{"*", ErrPathNotOrigin},
		{"", ErrPathNotOrigin},
		{"/a%2Fb", ErrPathEncodedSep},
		{"/a%2fb", ErrPathEncodedSep},
		{"/a%5C..%5Cadmin", ErrPathEncodedSep},
		{"/a%252e%252e/admin", ErrPathEncodedSep}, // double encoding
		{"/a%00.json", ErrPathEncodedSep},
		{"/a%3Fb", ErrPathEncodedSep},
		{"/a%23b", ErrPathEncodedSep},
		{"/a%0d%0aX-Injected:1", ErrPathEncodedSep},
		{"/a%zz", ErrPathBadEscape},
		{"/a%4", ErrPathBadEscape},
		{"/a%", ErrPathBadEscape},
		{"/a\\..\\admin", ErrPathBackslash},
		{"/a b", ErrPathControl},
		{"/a\tb", ErrPathControl},
		{"/..", ErrPathAboveRoot},
		{"/../etc/passwd", ErrPathAboveRoot},
		{"/a/../../etc", ErrPathAboveRoot},
		{"/%2e%2e/etc", ErrPathAboveRoot},
		{"/public/..;/admin", ErrPathSemicolon},
		{"/;/admin", ErrPathSemicolon},
		{"/;jsessionid=X/admin/users", ErrPathSemicolon},
		{"/secret;jsessionid=1", ErrPathSemicolon},
		{"/%3b/admin", ErrPathEncodedSemi},
		{"/%3B/admin", ErrPathEncodedSemi},
		{"/%c0%ae%c0%ae/admin", ErrPathNotUTF8}, // overlong "."
		{"/%ff", ErrPathNotUTF8},
		{"/caf%e9", ErrPathNotUTF8},    // Latin-1, not UTF-8
		{"/%ed%a0%80", ErrPathNotUTF8}, // a UTF-16 surrogate
	}
	for _, tt := range tests {
		dec, _, err := NormalizePath(nil, nil, []byte(tt.raw), false)
		if !errors.Is(err, tt.want) {
			t.Errorf("%q: got %q, %v; want %v", tt.raw, dec, err, tt.want)
		}
	}
}

// With WARDEN_PATH_SEMICOLON=keep a raw ';' is forwarded as sent, but what
// servlet containers would read as ".." still is not, nor an encoded ';'.
func TestNormalizePathKeepingSemicolons(t *testing.T) {
	for _, tt := range []struct {
		raw, want string
		err       error
	}{
		{"/users/alice;v=1", "/users/alice;v=1", nil},
		{"/a;b=1/c", "/a;b=1/c", nil},
		{"/public/..;/admin", "", ErrPathDotParameters},
		{"/public/.;x=1/admin", "", ErrPathDotParameters},
		{"/a%3Bb", "", ErrPathEncodedSemi},
	} {
		dec, enc, err := NormalizePath(nil, nil, []byte(tt.raw), true)
		if !errors.Is(err, tt.err) || tt.err == nil && (string(dec) != tt.want || string(enc) != tt.want) {
			t.Errorf("%q: got %q %q %v; want %q %v", tt.raw, dec, enc, err, tt.want, tt.err)
		}
	}
}

func TestNormalizePathAppendsWithoutAllocating(t *testing.T) {
	dec, enc := make([]byte, 0, 64), make([]byte, 0, 64)
	raw := []byte("/api//v1/./items/../orders/%41")
	allocs := testing.AllocsPerRun(100, func() {
		var err error
		dec, enc, err = NormalizePath(dec[:0], enc[:0], raw, false)
		if err != nil || string(dec) != "/api/v1/orders/A" {
			t.Fatalf("%q %v", dec, err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per call, want 0", allocs)
	}
}

// FuzzNormalizePath checks what must hold for any input: no panic, and an
// accepted path is canonical: it starts with '/', has no "//", no dot
// segments, and normalizing its encoded form gives the same path again.
func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{"/", "/a/../b", "//x", "/%2e%2e/", "/a%2Fb", "/..;/", "/caf%C3%A9", "/a/./b/"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, raw string, keep bool) {
		dec, enc, err := NormalizePath(nil, nil, []byte(raw), keep)
		if err != nil {
			return
		}
		d := string(dec)
		if !strings.HasPrefix(d, "/") || strings.Contains(d, "//") || strings.Contains(d, "/./") ||
			strings.Contains(d, "/../") || strings.HasSuffix(d, "/..") || strings.HasSuffix(d, "/.") {
			t.Fatalf("%q normalized to non-canonical %q", raw, d)
		}
		if !utf8.Valid(dec) || !keep && strings.Contains(d, ";") {
			t.Fatalf("%q normalized to %q: invalid UTF-8 or a ';'", raw, d)
		}
		dec2, enc2, err := NormalizePath(nil, nil, enc, keep)
		if err != nil || string(dec2) != d || string(enc2) != string(enc) {
			t.Fatalf("%q -> %q (%q) is not stable: %q %q %v", raw, d, enc, dec2, enc2, err)
		}
	})
}
