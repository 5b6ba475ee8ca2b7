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

// NewContext returns ctx carrying id.
func NewContext(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the request ID in ctx, or "" if there is none.
func FromContext(ctx context.Context) string {
	id, _ := ctx.Value(ctxKey{}).(string)
	return id
}

// Middleware gives every request an ID: the caller's when it is acceptable,
// a new UUID otherwise. Accepting only short printable IDs keeps a client from
// writing control characters or megabytes into our logs.
func Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(Header)
		if !valid(id) {
			id = uuid.NewString()
		}
		w.Header().Set(Header, id)
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), id)))
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
