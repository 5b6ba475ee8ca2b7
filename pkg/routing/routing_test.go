package routing

import (
	"slices"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, a := range []Attrs{
		{Weight: 1},
		{Weight: 9, Tags: []string{"v2"}},
		{Weight: 3, Tags: []string{"a#b", "c&d=e", "version=v2", ""}},
	} {
		s := With("rating/rating-1@127.0.0.1:8082", a)
		inst, got := Split(s)
		if inst != "rating/rating-1@127.0.0.1:8082" || got.Weight != a.Weight || !slices.Equal(got.Tags, a.Tags) {
			t.Errorf("Split(With(%+v)) = %q, %+v (string %q)", a, inst, got, s)
		}
	}
}

func TestSplitWithout(t *testing.T) {
	for _, s := range []string{
		"rating/rating-1@127.0.0.1:8082",
		"127.0.0.1:8082",
		"we#ird/id@127.0.0.1:8082", // a '#' before the address is not a separator
	} {
		inst, a := Split(s)
		if inst != s || a.Weight != DefaultWeight || a.Tags != nil {
			t.Errorf("Split(%q) = %q, %+v; want it unchanged, weight 1", s, inst, a)
		}
	}
	// Attributes that do not parse, or a weight below 1, route as weight 1.
	for _, s := range []string{"x@1.2.3.4:5#w=0", "x@1.2.3.4:5#w=-3", "x@1.2.3.4:5#w=many", "x@1.2.3.4:5#%zz"} {
		if inst, a := Split(s); inst != "x@1.2.3.4:5" || a.Weight != DefaultWeight {
			t.Errorf("Split(%q) = %q, %+v", s, inst, a)
		}
	}
	if got := With("x@1.2.3.4:5", Attrs{Weight: 1}); got != "x@1.2.3.4:5" {
		t.Errorf("With of the defaults: %q, want the instance alone", got)
	}
}
