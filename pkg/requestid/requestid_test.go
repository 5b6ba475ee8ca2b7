package requestid

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// serve sends a request with the given X-Request-ID values through
// Middleware and returns the ID the handler saw and the answer's header.
func serve(t *testing.T, ids ...string) (seen string, echoed []string) {
	t.Helper()
	h := Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = FromContext(r.Context())
	}))
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	for _, id := range ids {
		req.Header.Add(Header, id)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return seen, rec.Header().Values(Header)
}

func TestMiddlewareKeepsAnAcceptableID(t *testing.T) {
	seen, echoed := serve(t, "req-7")
	if seen != "req-7" || len(echoed) != 1 || echoed[0] != "req-7" {
		t.Fatalf("handler saw %q, answer echoed %q; want req-7 in both", seen, echoed)
	}
}

func TestMiddlewareTakesTheFirstOfSeveralIDs(t *testing.T) {
	seen, echoed := serve(t, "first", "second")
	if seen != "first" || len(echoed) != 1 || echoed[0] != "first" {
		t.Fatalf("handler saw %q, answer echoed %q; want the first value alone in both", seen, echoed)
	}
}

func TestMiddlewareReplacesAnUnacceptableID(t *testing.T) {
	for _, id := range []string{"", "two words", "tab\there", "caf\u00e9", strings.Repeat("x", maxLen+1)} {
		seen, echoed := serve(t, id)
		if seen == "" || seen == id || len(echoed) != 1 || echoed[0] != seen {
			t.Errorf("ID %q: handler saw %q, answer echoed %q; want a new ID, the same in both", id, seen, echoed)
		}
	}
	if seen, _ := serve(t); seen == "" {
		t.Error("no ID sent: handler saw none; want a new one")
	}
}

// The answer's header shares the request's value: an append to one must not
// show in the other.
func TestEchoedHeaderIsNotAnAliasToAppendTo(t *testing.T) {
	h := Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add(Header, "appended")
		if got := r.Header.Values(Header); len(got) != 2 || got[1] != "second" {
			t.Errorf("request header became %q after an append to the answer's", got)
		}
	}))
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Add(Header, "first")
	req.Header.Add(Header, "second")
	h.ServeHTTP(httptest.NewRecorder(), req)
}

func TestForward(t *testing.T) {
	h := http.Header{}
	Forward(context.Background(), h)
	if _, ok := h[Header]; ok {
		t.Fatalf("no ID in the context, but Forward set %q", h[Header])
	}
	Forward(NewContext(context.Background(), ""), h)
	if _, ok := h[Header]; ok {
		t.Fatalf("an empty ID in the context, but Forward set %q", h[Header])
	}
	Forward(NewContext(context.Background(), "req-9"), h)
	if got := h.Get(Header); got != "req-9" {
		t.Fatalf("forwarded %q, want req-9", got)
	}
}

// What the shared header value saves, held: on a hop that keeps the
// caller's ID, the middleware allocates the context value, its holder and
// the request's copy, nothing else; one that makes an ID, what making it
// takes besides (two in uuid.NewString); forwarding allocates nothing.
func TestAllocations(t *testing.T) {
	h := Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	w := &discard{h: http.Header{}}
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	if n := testing.AllocsPerRun(100, func() { h.ServeHTTP(w, req) }); n > 5 {
		t.Errorf("Middleware, no ID sent: %v allocations per request, want at most 5", n)
	}
	req.Header.Set(Header, "req-7")
	if n := testing.AllocsPerRun(100, func() { h.ServeHTTP(w, req) }); n > 3 {
		t.Errorf("Middleware, ID kept: %v allocations per request, want at most 3", n)
	}
	ctx, out := NewContext(context.Background(), "req-7"), http.Header{}
	if n := testing.AllocsPerRun(100, func() { Forward(ctx, out) }); n != 0 {
		t.Errorf("Forward: %v allocations, want 0", n)
	}
}

type discard struct{ h http.Header }

func (w *discard) Header() http.Header         { return w.h }
func (w *discard) Write(b []byte) (int, error) { return len(b), nil }
func (w *discard) WriteHeader(int)             {}
