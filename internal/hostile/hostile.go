// Package hostile helps the fuzz tests that feed movieapp's services hostile
// client input: it turns fuzzed bytes into the request a real server would
// hand the handler, and checks the one property every answer must have.
package hostile

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// Request builds the request a server would pass its handler for these
// wire-format parts, parsed by net/http's own request parser. ok is false
// when net/http would refuse it before any handler runs (a target with a
// space, a header with a bare newline...): there is then nothing to check.
func Request(method, path, rawQuery, contentType string, body []byte) (r *http.Request, ok bool) {
	var b bytes.Buffer
	b.WriteString(method + " " + path)
	if rawQuery != "" {
		b.WriteString("?" + rawQuery)
	}
	b.WriteString(" HTTP/1.1\r\nHost: movieapp.test\r\n")
	if contentType != "" {
		b.WriteString("Content-Type: " + contentType + "\r\n")
	}
	if body != nil {
		b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n")
	}
	b.WriteString("\r\n")
	b.Write(body)
	r, err := http.ReadRequest(bufio.NewReader(&b))
	if err != nil {
		return nil, false
	}
	return r, true
}

// Serve runs r through h and checks what every answer to client input must
// be: never a 5xx, and a JSON body as Shape says. It returns the answer for
// the caller's own checks.
func Serve(t testing.TB, h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	if rec.Code >= 500 {
		t.Fatalf("%s %s: status %d for client input: %s", r.Method, r.URL, rec.Code, rec.Body)
	}
	Shape(t, r, rec)
	return rec
}

// Shape checks the shape every answer has, whatever its status: a JSON body,
// and for an error the one error shape {"error":"..."}.
func Shape(t testing.TB, r *http.Request, rec *httptest.ResponseRecorder) {
	t.Helper()
	what := r.Method + " " + r.URL.String()
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("%s: status %d with Content-Type %q, want JSON", what, rec.Code, ct)
	}
	if rec.Code >= 400 {
		var e struct {
			Error *string `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == nil || *e.Error == "" {
			t.Fatalf("%s: status %d with body %q, want {\"error\":\"...\"}", what, rec.Code, rec.Body)
		}
	} else if !json.Valid(rec.Body.Bytes()) {
		t.Fatalf("%s: status %d with a body that is not JSON: %q", what, rec.Code, rec.Body)
	}
}

// Status fails t unless code is one of want.
func Status(t testing.TB, r *http.Request, code int, want ...int) {
	t.Helper()
	for _, w := range want {
		if code == w {
			return
		}
	}
	t.Fatalf("%s %s: status %d, want one of %v", r.Method, r.URL, code, want)
}

// Accepted checks that a request answered with something other than a 400
// had a query string that deserved it: well formed, with exactly the
// parameters in rules, each once, each value passing its rule. It returns
// the parsed query.
func Accepted(t testing.TB, r *http.Request, code int, rules map[string]func(string) bool) url.Values {
	t.Helper()
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil || len(q) != len(rules) {
		t.Fatalf("query %q answered %d, want 400", r.URL.RawQuery, code)
	}
	for name, valid := range rules {
		if len(q[name]) != 1 || !valid(q.Get(name)) {
			t.Fatalf("query %q answered %d, want 400 for its %s", r.URL.RawQuery, code, name)
		}
	}
	return q
}

// Get serves GET path?rawQuery with h for a read endpoint, whose answers
// are 200, 400 or 404, and checks it as Serve and Accepted do. ok is false
// when there is nothing more to check: net/http would refuse the request,
// or it was answered 400.
func Get(t testing.TB, h http.Handler, path, rawQuery string, rules map[string]func(string) bool) (rec *httptest.ResponseRecorder, q url.Values, ok bool) {
	t.Helper()
	r, ok := Request(http.MethodGet, path, rawQuery, "", nil)
	if !ok {
		return nil, nil, false
	}
	rec = Serve(t, h, r)
	Status(t, r, rec.Code, http.StatusOK, http.StatusBadRequest, http.StatusNotFound)
	if rec.Code == http.StatusBadRequest {
		return rec, nil, false
	}
	return rec, Accepted(t, r, rec.Code, rules), true
}
