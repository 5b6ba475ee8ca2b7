package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"movieexample.com/metadata"
	"movieexample.com/movie"
	"movieexample.com/movie/httpapi"
	"movieexample.com/pkg/errs"
	"movieexample.com/pkg/gateway"
	"movieexample.com/pkg/web"
	"movieexample.com/rating"
)

// fakeMetadata and fakeRating answer from fixed values.
type fakeMetadata struct {
	md  metadata.Metadata
	err error
}

func (f fakeMetadata) Get(context.Context, string) (metadata.Metadata, error) {
	return f.md, f.err
}

type fakeRating struct {
	agg rating.Aggregate
	err error
}

func (f fakeRating) Get(context.Context, rating.Key) (rating.Aggregate, error) { return f.agg, f.err }

var (
	shawshank = metadata.Metadata{ID: "1", Title: "The Shawshank Redemption", Director: "Frank Darabont"}
	fourHalf  = rating.Aggregate{ID: "1", Type: rating.RecordTypeMovie, Average: 4.5, Count: 2}
)

func TestHTTPGetMovie(t *testing.T) {
	unavailable := fmt.Errorf("%w: no metadata instance discovered", gateway.ErrUnavailable)
	// What the gateway returns when every instance it asked shed the call.
	shed := fmt.Errorf("%w: metadata: upstream %w: 503 with Retry-After", gateway.ErrUnavailable, errs.ErrOverloaded)
	tests := []struct {
		name       string
		target     string
		metadata   fakeMetadata
		rating     fakeRating
		wantStatus int
		wantBody   string
		retryAfter string // the Retry-After header; "" for none
	}{
		{name: "metadata and rating", target: "/movie?id=1", metadata: fakeMetadata{md: shawshank}, rating: fakeRating{agg: fourHalf},
			wantStatus: 200, wantBody: `{"metadata":{"id":"1","title":"The Shawshank Redemption","description":"","director":"Frank Darabont"},"rating":4.5}`},
		{name: "no ratings yet: rating left out", target: "/movie?id=1", metadata: fakeMetadata{md: shawshank}, rating: fakeRating{err: rating.ErrNotFound},
			wantStatus: 200, wantBody: `{"metadata":{"id":"1","title":"The Shawshank Redemption","description":"","director":"Frank Darabont"}}`},
		{name: "rating down: marked missing", target: "/movie?id=1", metadata: fakeMetadata{md: shawshank}, rating: fakeRating{err: unavailable},
			wantStatus: 200, wantBody: `{"metadata":{"id":"1","title":"The Shawshank Redemption","description":"","director":"Frank Darabont"},"partial":["rating"]}`},
		{name: "rating answers garbage: marked missing", target: "/movie?id=1", metadata: fakeMetadata{md: shawshank}, rating: fakeRating{err: web.ErrBadResponse},
			wantStatus: 200, wantBody: `{"metadata":{"id":"1","title":"The Shawshank Redemption","description":"","director":"Frank Darabont"},"partial":["rating"]}`},
		{name: "metadata not found", target: "/movie?id=1", metadata: fakeMetadata{err: metadata.ErrNotFound}, rating: fakeRating{agg: fourHalf},
			wantStatus: 404, wantBody: `{"error":"movie not found"}`},
		{name: "metadata unavailable", target: "/movie?id=1", metadata: fakeMetadata{err: unavailable}, rating: fakeRating{agg: fourHalf},
			wantStatus: 503, wantBody: `{"error":"service unavailable"}`},
		{name: "metadata sheds: 503, told to come back", target: "/movie?id=1", metadata: fakeMetadata{err: shed}, rating: fakeRating{agg: fourHalf},
			wantStatus: 503, wantBody: `{"error":"service unavailable"}`, retryAfter: web.RetryAfter},
		{name: "rating sheds: marked missing, as when it is down", target: "/movie?id=1", metadata: fakeMetadata{md: shawshank}, rating: fakeRating{err: shed},
			wantStatus: 200, wantBody: `{"metadata":{"id":"1","title":"The Shawshank Redemption","description":"","director":"Frank Darabont"},"partial":["rating"]}`},
		{name: "metadata answers garbage", target: "/movie?id=1", metadata: fakeMetadata{err: web.ErrBadResponse}, rating: fakeRating{agg: fourHalf},
			wantStatus: 502, wantBody: `{"error":"bad gateway"}`},
		{name: "missing id", target: "/movie", wantStatus: 400},
		{name: "malformed id", target: "/movie?id=%20", wantStatus: 400},
		{name: "two ids", target: "/movie?id=1&id=2", wantStatus: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := httpapi.NewHTTPHandler(movie.MakeEndpoints(movie.NewService(tt.metadata, tt.rating)), discard)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", tt.target, nil))
			if rec.Code != tt.wantStatus {
				t.Errorf("status = %d, want %d (body %s)", rec.Code, tt.wantStatus, rec.Body)
			}
			if got := rec.Header().Get("Retry-After"); got != tt.retryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tt.retryAfter)
			}
			got := strings.TrimSpace(rec.Body.String())
			if tt.wantBody != "" && got != tt.wantBody {
				t.Errorf("body = %s\nwant   %s", got, tt.wantBody)
			}
			var e struct{ Error string }
			if rec.Code >= 400 && (json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Error == "") {
				t.Errorf("error body %s is not {\"error\":...}", got)
			}
		})
	}
}
