package errs_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"movieexample.com/pkg/errs"
)

func TestKindOf(t *testing.T) {
	notFound := errs.New(errs.NotFound, "movie not found")
	unavailable := errs.New(errs.Unavailable, "store unavailable")
	tests := []struct {
		name string
		err  error
		want errs.Kind
	}{
		{"nil", nil, errs.Internal},
		{"plain error", errors.New("boom"), errs.Internal},
		{"context error", context.DeadlineExceeded, errs.Internal},
		{"sentinel", notFound, errs.NotFound},
		{"ErrInvalid", errs.ErrInvalid, errs.Invalid},
		{"wrapped once", fmt.Errorf("%w: id must be set", errs.ErrInvalid), errs.Invalid},
		{"wrapped twice", fmt.Errorf("get: %w", fmt.Errorf("query: %w", unavailable)), errs.Unavailable},
		{"formatted with %v loses the kind", fmt.Errorf("get: %v", notFound), errs.Internal},
		{"first kind in the chain wins", fmt.Errorf("%w: %w", errs.ErrInvalid, notFound), errs.Invalid},
		{"joined with a plain error", errors.Join(errors.New("cleanup failed"), unavailable), errs.Unavailable},
		{"each kind survives wrapping", fmt.Errorf("x: %w", errs.New(errs.UnsupportedMediaType, "m")), errs.UnsupportedMediaType},
		{"explicit Internal", errs.New(errs.Internal, "bug"), errs.Internal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errs.KindOf(tt.err); got != tt.want {
				t.Errorf("KindOf(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

func TestNew(t *testing.T) {
	a, b := errs.New(errs.NotFound, "not found"), errs.New(errs.NotFound, "not found")
	if errors.Is(a, b) || errors.Is(b, a) {
		t.Error("two errors from New with the same kind and message match each other; want distinct sentinels")
	}
	if !errors.Is(fmt.Errorf("wrap: %w", a), a) {
		t.Error("a wrapped sentinel does not match itself")
	}
	if got, want := a.Error(), "not found"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got, want := errs.ErrInvalid.Error(), "invalid argument"; got != want {
		t.Errorf("ErrInvalid = %q, want %q", got, want)
	}
}

// TestKindOfDoesNotAllocate guards the gateway's hot path: every failed
// upstream call is classified by kind, several times.
func TestKindOfDoesNotAllocate(t *testing.T) {
	err := fmt.Errorf("get: %w", errs.New(errs.NotFound, "gone"))
	if got := testing.AllocsPerRun(100, func() { _ = errs.KindOf(err) }); got != 0 {
		t.Errorf("KindOf allocates %v times per call, want 0", got)
	}
}
