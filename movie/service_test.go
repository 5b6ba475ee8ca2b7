package movie

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"movieexample.com/metadata"
	"movieexample.com/pkg/gateway"
	"movieexample.com/rating"
)

// fakeMetadata and fakeRating answer from fixed values.
type fakeMetadata struct {
	md  metadata.Metadata
	err error
}

func (f fakeMetadata) Metadata(context.Context, string) (metadata.Metadata, error) {
	return f.md, f.err
}

type fakeRating struct {
	agg rating.Aggregate
	err error
}

func (f fakeRating) Rating(context.Context, string) (rating.Aggregate, error) { return f.agg, f.err }

var (
	shawshank = metadata.Metadata{ID: "1", Title: "The Shawshank Redemption", Director: "Frank Darabont"}
	fourHalf  = rating.Aggregate{ID: "1", Type: rating.RecordTypeMovie, Average: 4.5, Count: 2}
)

func TestHTTPGetMovie(t *testing.T) {
	unavailable := fmt.Errorf("%w: no metadata instance discovered", gateway.ErrUnavailable)
	tests := []struct {
		name       string
		target     string
		metadata   fakeMetadata
		rating     fakeRating
		wantStatus int
		wantBody   string
	}{
		{name: "metadata and rating", target: "/movie?id=1", metadata: fakeMetadata{md: shawshank}, rating: fakeRating{agg: fourHalf},
			wantStatus: 200, wantBody: `{"metadata":{"id":"1","title":"The Shawshank Redemption","description":"","director":"Frank Darabont"},"rating":4.5}`},
		{name: "no ratings yet: rating left out", target: "/movie?id=1", metadata: fakeMetadata{md: shawshank}, rating: fakeRating{err: gateway.ErrNotFound},
			wantStatus: 200, wantBody: `{"metadata":{"id":"1","title":"The Shawshank Redemption","description":"","director":"Frank Darabont"}}`},
		{name: "rating down: marked missing", target: "/movie?id=1", metadata: fakeMetadata{md: shawshank}, rating: fakeRating{err: unavailable},
			wantStatus: 200, wantBody: `{"metadata":{"id":"1","title":"The Shawshank Redemption","description":"","director":"Frank Darabont"},"partial":["rating"]}`},
		{name: "rating answers garbage: marked missing", target: "/movie?id=1", metadata: fakeMetadata{md: shawshank}, rating: fakeRating{err: gateway.ErrBadResponse},
			wantStatus: 200, wantBody: `{"metadata":{"id":"1","title":"The Shawshank Redemption","description":"","director":"Frank Darabont"},"partial":["rating"]}`},
		{name: "metadata not found", target: "/movie?id=1", metadata: fakeMetadata{err: gateway.ErrNotFound}, rating: fakeRating{agg: fourHalf},
			wantStatus: 404, wantBody: `{"error":"movie not found"}`},
		{name: "metadata unavailable", target: "/movie?id=1", metadata: fakeMetadata{err: unavailable}, rating: fakeRating{agg: fourHalf},
			wantStatus: 503, wantBody: `{"error":"service unavailable"}`},
		{name: "metadata answers garbage", target: "/movie?id=1", metadata: fakeMetadata{err: gateway.ErrBadResponse}, rating: fakeRating{agg: fourHalf},
			wantStatus: 502, wantBody: `{"error":"bad gateway"}`},
		{name: "missing id", target: "/movie", wantStatus: 400},
		{name: "malformed id", target: "/movie?id=%20", wantStatus: 400},
		{name: "two ids", target: "/movie?id=1&id=2", wantStatus: 400},
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHTTPHandler(MakeEndpoints(NewService(tt.metadata, tt.rating)), logger)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", tt.target, nil))
			if rec.Code != tt.wantStatus {
				t.Errorf("status = %d, want %d (body %s)", rec.Code, tt.wantStatus, rec.Body)
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

func TestGetFetchesConcurrently(t *testing.T) {
	// Each fake waits for the other to have started: called one after the
	// other, the first would wait until the context ended.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var arrived sync.WaitGroup
	arrived.Add(2)
	bothStarted := make(chan struct{})
	go func() { arrived.Wait(); close(bothStarted) }()
	both := func() error {
		arrived.Done()
		select {
		case <-bothStarted:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	svc := NewService(waitingMetadata{both}, waitingRating{both})
	if _, err := svc.Get(ctx, "1"); err != nil {
		t.Fatalf("Get: %v (metadata and rating were not fetched concurrently)", err)
	}
}

type waitingMetadata struct{ wait func() error }

func (w waitingMetadata) Metadata(context.Context, string) (metadata.Metadata, error) {
	return shawshank, w.wait()
}

type waitingRating struct{ wait func() error }

func (w waitingRating) Rating(context.Context, string) (rating.Aggregate, error) {
	return fourHalf, w.wait()
}

func TestGatewayErrorsBecomeServiceErrors(t *testing.T) {
	tests := []struct {
		in   error
		want error
	}{
		{gateway.ErrNotFound, ErrNotFound},
		{gateway.ErrUnavailable, ErrUnavailable},
		{gateway.ErrBadResponse, ErrBadGateway},
		{errors.New("anything else"), ErrUnavailable},
	}
	for _, tt := range tests {
		if got := fromGateway(tt.in); !errors.Is(got, tt.want) {
			t.Errorf("fromGateway(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
