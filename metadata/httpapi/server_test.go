package httpapi

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"movieexample.com/metadata"
)

func newTestHandler() http.Handler {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	return NewHTTPHandler(metadata.MakeEndpoints(metadata.NewService(metadata.NewMemory(metadata.Seed))), logger)
}

func TestHTTP(t *testing.T) {
	long := strings.Repeat("a", 65)
	tests := []struct {
		name        string
		method      string
		target      string
		contentType string
		body        string
		wantStatus  int
		wantInBody  string
	}{
		{name: "get seeded", method: "GET", target: "/metadata?id=1", wantStatus: 200, wantInBody: `"title":"The Shawshank Redemption"`},
		{name: "get unknown", method: "GET", target: "/metadata?id=999", wantStatus: 404, wantInBody: `"error":"movie not found"`},
		{name: "get without id", method: "GET", target: "/metadata", wantStatus: 400, wantInBody: `"error"`},
		{name: "get empty id", method: "GET", target: "/metadata?id=", wantStatus: 400, wantInBody: `"error"`},
		{name: "get two ids", method: "GET", target: "/metadata?id=1&id=2", wantStatus: 400, wantInBody: `"error"`},
		{name: "get id too long", method: "GET", target: "/metadata?id=" + long, wantStatus: 400, wantInBody: `"error"`},
		{name: "get id with bad characters", method: "GET", target: "/metadata?id=%3Cscript%3E", wantStatus: 400, wantInBody: `"error"`},
		{name: "put creates", method: "PUT", target: "/metadata", contentType: "application/json",
			body: `{"id":"42","title":"Ikiru","description":"A bureaucrat seeks meaning.","director":"Akira Kurosawa"}`, wantStatus: 200, wantInBody: `"title":"Ikiru"`},
		{name: "put malformed JSON", method: "PUT", target: "/metadata", body: `{"id":`, wantStatus: 400, wantInBody: `"error"`},
		{name: "put unknown field", method: "PUT", target: "/metadata", body: `{"id":"7","title":"x","rating":5}`, wantStatus: 400, wantInBody: `"error"`},
		{name: "put without title", method: "PUT", target: "/metadata", body: `{"id":"7"}`, wantStatus: 400, wantInBody: `"error"`},
		{name: "put bad id", method: "PUT", target: "/metadata", body: `{"id":"a b","title":"x"}`, wantStatus: 400, wantInBody: `"error"`},
		{name: "put trailing data", method: "PUT", target: "/metadata", body: `{"id":"7","title":"x"} {}`, wantStatus: 400, wantInBody: `"error"`},
		{name: "put wrong content type", method: "PUT", target: "/metadata", contentType: "text/plain", body: `{"id":"7","title":"x"}`, wantStatus: 415, wantInBody: `"error"`},
		{name: "put body too large", method: "PUT", target: "/metadata", body: `{"id":"7","title":"` + strings.Repeat("x", 70<<10) + `"}`, wantStatus: 413, wantInBody: `"error"`},
		{name: "wrong method", method: "DELETE", target: "/metadata?id=1", wantStatus: 405, wantInBody: `"error"`},
		{name: "unknown path", method: "GET", target: "/nope", wantStatus: 404, wantInBody: `"error"`},
	}
	h := newTestHandler()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.target, strings.NewReader(tt.body))
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if got := rec.Code; got != tt.wantStatus {
				t.Errorf("status = %d, want %d (body %s)", got, tt.wantStatus, rec.Body)
			}
			if got := rec.Body.String(); !strings.Contains(got, tt.wantInBody) {
				t.Errorf("body = %s, want it to contain %s", got, tt.wantInBody)
			}
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type = %q, want JSON", ct)
			}
			if rec.Code >= 400 && !json.Valid(rec.Body.Bytes()) {
				t.Errorf("error body is not JSON: %s", rec.Body)
			}
		})
	}
}

func TestHTTPMethodNotAllowedListsAllowed(t *testing.T) {
	rec := httptest.NewRecorder()
	newTestHandler().ServeHTTP(rec, httptest.NewRequest("POST", "/metadata", nil))
	if got, want := rec.Header().Get("Allow"), "GET, PUT"; got != want {
		t.Errorf("Allow = %q, want %q", got, want)
	}
}

func TestPutThenGet(t *testing.T) {
	h := newTestHandler()
	put := httptest.NewRequest("PUT", "/metadata", strings.NewReader(`{"id":"1","title":"Replaced","description":"","director":"Someone"}`))
	h.ServeHTTP(httptest.NewRecorder(), put)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metadata?id=1", nil))
	var got metadata.Metadata
	if err := json.NewDecoder(rec.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if want := (metadata.Metadata{ID: "1", Title: "Replaced", Director: "Someone"}); got != want {
		t.Errorf("after PUT, GET = %+v, want %+v", got, want)
	}
}
