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
// nothing may write to this one: it is in several headers at once. one holds
// an ID that came in no header (generated, or given to NewContext), so that
// its slice costs no allocation of its own.
type value struct {
	header []string
	one    [1]string
}

// NewContext returns ctx carrying id.
func NewContext(ctx context.Context, id string) context.Context {
	v := &value{}
	v.one[0] = id
	v.header = v.one[:]
	return context.WithValue(ctx, ctxKey{}, v)
}

// FromContext returns the request ID in ctx, or "" if there is none.
func FromContext(ctx context.Context) string {
	if v, ok := ctx.Value(ctxKey{}).(*value); ok {
		return v.header[0]
	}
	return ""
}

// Forward sets h's X-Request-ID to the request ID in ctx, if there is one:
// what a call to another service does, so that the ID follows the request.
// h then shares the context's value, which nothing may modify in place.
func Forward(ctx context.Context, h http.Header) {
	if v, ok := ctx.Value(ctxKey{}).(*value); ok && v.header[0] != "" {
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
		v := &value{header: r.Header[Header]}
		if len(v.header) == 0 || !valid(v.header[0]) {
			v.one[0] = uuid.NewString()
			v.header = v.one[:]
		} else {
			v.header = v.header[:1:1]
		}
		w.Header()[Header] = v.header
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, v)))
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
