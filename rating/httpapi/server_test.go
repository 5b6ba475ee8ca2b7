package httpapi

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"movieexample.com/rating"
)

func newTestHandler() http.Handler {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	return NewHTTPHandler(rating.MakeEndpoints(rating.NewService(rating.NewMemory(rating.Seed))), logger)
}

func TestHTTP(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		target     string
		wantStatus int
		wantInBody string
	}{
		{"get seeded", "GET", "/rating?id=2&type=movie", 200, `"rating":4.5,"count":2`},
		{"get unrated", "GET", "/rating?id=5&type=movie", 404, `"error"`},
		{"get unknown type", "GET", "/rating?id=1&type=book", 400, `"error"`},
		{"get without type", "GET", "/rating?id=1", 400, `"error"`},
		{"get without id", "GET", "/rating?type=movie", 400, `"error"`},
		{"get repeated id", "GET", "/rating?id=1&id=2&type=movie", 400, `"error"`},
		{"get bad id", "GET", "/rating?id=..%2F..%2Fetc&type=movie", 400, `"error"`},
		{"put records", "PUT", "/rating?id=5&type=movie&userId=zoe&value=3", 200, `"rating":3,"count":1`},
		{"put value too low", "PUT", "/rating?id=1&type=movie&userId=zoe&value=0", 400, `"error"`},
		{"put value too high", "PUT", "/rating?id=1&type=movie&userId=zoe&value=6", 400, `"error"`},
		{"put value not an integer", "PUT", "/rating?id=1&type=movie&userId=zoe&value=4.5", 400, `"error"`},
		{"put value huge", "PUT", "/rating?id=1&type=movie&userId=zoe&value=99999999999999999999", 400, `"error"`},
		{"put without user", "PUT", "/rating?id=1&type=movie&value=4", 400, `"error"`},
		{"put bad user", "PUT", "/rating?id=1&type=movie&userId=a%00b&value=4", 400, `"error"`},
		{"put unknown type", "PUT", "/rating?id=1&type=book&userId=zoe&value=4", 400, `"error"`},
		{"wrong method", "POST", "/rating?id=1&type=movie", 405, `"error"`},
	}
	h := newTestHandler()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.target, nil))
			if got := rec.Code; got != tt.wantStatus {
				t.Errorf("status = %d, want %d (body %s)", got, tt.wantStatus, rec.Body)
			}
			if got := rec.Body.String(); !strings.Contains(got, tt.wantInBody) {
				t.Errorf("body = %s, want it to contain %s", got, tt.wantInBody)
			}
			if !json.Valid(rec.Body.Bytes()) {
				t.Errorf("body is not JSON: %s", rec.Body)
			}
		})
	}
}

func TestSecondRatingBySameUserReplacesFirst(t *testing.T) {
	h := newTestHandler()
	for _, v := range []string{"1", "5"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("PUT", "/rating?id=9&type=movie&userId=zoe&value="+v, nil))
		if rec.Code != 200 {
			t.Fatalf("PUT value=%s: %d %s", v, rec.Code, rec.Body)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/rating?id=9&type=movie", nil))
	var got rating.Aggregate
	if err := json.NewDecoder(rec.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if want := (rating.Aggregate{ID: "9", Type: rating.RecordTypeMovie, Average: 5, Count: 1}); got != want {
		t.Errorf("GET = %+v, want %+v", got, want)
	}
}
