// Package requestid carries one ID per client request through every service
// it touches: taken from an incoming X-Request-ID header or generated, echoed
// in the response, forwarded upstream by the gateway, and added to every log
// line written with the request's context.
package requestid

import (
	"context"
	"net/http"

	"github.com/google/uuid"
)

// Header is the HTTP header that carries the request ID, X-Request-ID,
// spelled in Go's canonical form: http.Header's Get and Set then use it as
// it is, where any other spelling costs a conversion and an allocation on
// every call, several times per request.
const Header = "X-Request-Id"

// maxLen bounds an accepted incoming ID; longer ones are replaced.
const maxLen = 128

type ctxKey struct{}

// value is what a context carries: the ID as the one-element header value
// it travels in. The answer's header and every upstream request's take that
// same slice, where http.Header.Set would allocate one per header per hop
// (docs/benchmarks.md). Nothing writes to a header value once it is set, and
// nothing may write to this one: it is in several headers at once.
type value struct{ header []string }

// NewContext returns ctx carrying id.
func NewContext(ctx context.Context, id string) context.Context {
	return withHeader(ctx, []string{id})
}

func withHeader(ctx context.Context, header []string) context.Context {
	return context.WithValue(ctx, ctxKey{}, &value{header: header})
}

// FromContext returns the request ID in ctx, or "" if there is none.
func FromContext(ctx context.Context) string {
	if v, ok := ctx.Value(ctxKey{}).(*value); ok {
		return v.header[0]
	}
	return ""
}

// Forward sets the request ID in ctx, if there is one, as h's Header: what
// a call to another service does, so that the ID follows the request.
func Forward(ctx context.Context, h http.Header) {
	if v, ok := ctx.Value(ctxKey{}).(*value); ok {
		h[Header] = v.header
	}
}

// Middleware gives every request an ID: the caller's when it is acceptable,
// a new UUID otherwise. Accepting only short printable IDs keeps a client from
// writing control characters or megabytes into our logs.
func Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The first value, as Header.Get would read it, kept in the slice
		// net/http parsed it into (capacity 1, so that an append to either
		// header cannot write into the other).
		header := r.Header[Header]
		if len(header) == 0 || !valid(header[0]) {
			header = []string{uuid.NewString()}
		} else {
			header = header[:1:1]
		}
		w.Header()[Header] = header
		next.ServeHTTP(w, r.WithContext(withHeader(r.Context(), header)))
	})
}

func valid(id string) bool {
	if id == "" || len(id) > maxLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}
