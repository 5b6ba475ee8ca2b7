package identity

import (
	"strings"
	"testing"
)

func TestSplit(t *testing.T) {
	tests := []struct {
		in          string
		ident, addr string
		ok          bool
	}{
		{"rating/rating-1@127.0.0.1:8082", "rating/rating-1", "127.0.0.1:8082", true},
		{"rating/rating-1@[::1]:8082", "rating/rating-1", "[::1]:8082", true},
		{"odd/id@with@at@10.0.0.1:80", "odd/id@with@at", "10.0.0.1:80", true},
		{"127.0.0.1:8082", "", "", false},
		{"@127.0.0.1:8082", "", "", false},
		{"rating/rating-1@", "", "", false},
		{"", "", "", false},
	}
	for _, tt := range tests {
		ident, addr, ok := Split(tt.in)
		if ident != tt.ident || addr != tt.addr || ok != tt.ok {
			t.Errorf("Split(%q) = %q, %q, %v; want %q, %q, %v", tt.in, ident, addr, ok, tt.ident, tt.addr, tt.ok)
		}
	}
	in := Instance(Of("rating", "rating-1"), "127.0.0.1:8082")
	if ident, addr, ok := Split(in); !ok || ident != Of("rating", "rating-1") || addr != "127.0.0.1:8082" {
		t.Errorf("Split(Instance(...)) = %q, %q, %v: not the identity and address given", ident, addr, ok)
	}
}

func TestQuoteIsBounded(t *testing.T) {
	if got := Quote([]string{"a/1", "b/2"}); got != "a/1, b/2" {
		t.Errorf("Quote = %q", got)
	}
	if got := Quote([]string{strings.Repeat("x", 1<<20)}); len(got) > maxQuoted+3 {
		t.Errorf("Quote of a 1 MB header is %d bytes long", len(got))
	}
}

func TestIDInvertsOf(t *testing.T) {
	if got := ID(Of("rating", "rating-1b2c")); got != "rating-1b2c" {
		t.Errorf("ID(Of(rating, rating-1b2c)) = %q", got)
	}
	if got := ID("no-service"); got != "no-service" {
		t.Errorf("ID of an identity without a service = %q, want it whole", got)
	}
}
