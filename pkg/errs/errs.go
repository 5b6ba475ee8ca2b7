// Package errs is movieapp's one vocabulary of error kinds. A package
// declares its own sentinel errors with New, giving each the kind that says
// what a caller can do about it; transports map kinds, never individual
// errors, to their status codes (pkg/web has the HTTP table). Errors wrapped
// with fmt.Errorf("...: %w", err) keep their kind.
package errs

import "errors"

// Kind says what went wrong, in terms a caller can act on.
type Kind int

// The kinds. Internal is the zero value: an error of no declared kind is a
// bug, and is answered as one.
const (
	// Internal is an unexpected failure.
	Internal Kind = iota
	// Invalid means the request is malformed; retrying it cannot help.
	Invalid
	// NotFound means the requested thing does not exist.
	NotFound
	// Unavailable means the work could not be done now (a store busy or
	// unreachable, no upstream instance answering); it may succeed later.
	Unavailable
	// BadGateway means an upstream answered with something unusable.
	BadGateway
	// TooLarge means a request body exceeded its limit.
	TooLarge
	// UnsupportedMediaType means a body came in a format not accepted.
	UnsupportedMediaType
)

// ErrInvalid is the Invalid error every service wraps with the reason, as
// in fmt.Errorf("%w: id must be ...", errs.ErrInvalid).
var ErrInvalid = New(Invalid, "invalid argument")

// ErrOverloaded is the Unavailable error of work refused because an
// instance already has as much in flight as it admits: the instance is
// alive and well, only busy. An HTTP answer of it is a 503 with Retry-After
// (pkg/web); a gateway retries it on another instance only, and its circuit
// breakers do not count it as a failure (pkg/gateway).
var ErrOverloaded = New(Unavailable, "overloaded")

// kindError is a sentinel error with its kind.
type kindError struct {
	kind Kind
	msg  string
}

func (e *kindError) Error() string { return e.msg }

// New returns a new sentinel error of kind k with message msg. Each call
// returns a distinct error, as errors.New does.
func New(k Kind, msg string) error { return &kindError{kind: k, msg: msg} }

// KindOf returns the kind of the first error in err's chain that has one,
// and Internal if none has (or err is nil).
func KindOf(err error) Kind {
	// AsType, not As: As would move its target to the heap, an allocation
	// on every failed upstream call, which the gateway classifies by kind.
	if ke, ok := errors.AsType[*kindError](err); ok {
		return ke.kind
	}
	return Internal
}
