package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"movieexample.com/metadata"
	"movieexample.com/movie"
	"movieexample.com/movie/httpapi"
	"movieexample.com/pkg/gateway"
	"movieexample.com/pkg/logging"
	"movieexample.com/pkg/requestid"
	"movieexample.com/rating"
)

type metadataFunc func() (metadata.Metadata, error)

func (f metadataFunc) Get(context.Context, string) (metadata.Metadata, error) { return f() }

type ratingFunc func() (rating.Aggregate, error)

func (f ratingFunc) Get(context.Context, rating.Key) (rating.Aggregate, error) { return f() }

// TestErrorsAreLoggedOnceWhereHandled follows one GET /movie through the
// real handler and service: a failure is logged exactly once, with its cause
// and the request ID, by whoever decides what the client gets (the error
// encoder for a 5xx, the rating log for a degraded answer), and the client
// sees only the safe message.
func TestErrorsAreLoggedOnceWhereHandled(t *testing.T) {
	md := metadata.Metadata{ID: "1", Title: "Ikiru"}
	down := fmt.Errorf("%w: rating: dial tcp 10.0.0.7:8082: connection refused", gateway.ErrUnavailable)
	mdDown := fmt.Errorf("%w: metadata: dial tcp 10.0.0.5:8081: connection refused", gateway.ErrUnavailable)
	tests := []struct {
		name       string
		metadata   metadataFunc
		rating     ratingFunc
		wantStatus int
		wantLevel  string // level of the one log line; "" for no line
		wantCause  string
	}{
		{name: "all well: no line",
			metadata:   func() (metadata.Metadata, error) { return md, nil },
			rating:     func() (rating.Aggregate, error) { return rating.Aggregate{Average: 4, Count: 1}, nil },
			wantStatus: 200},
		{name: "no ratings yet is an answer: no line",
			metadata:   func() (metadata.Metadata, error) { return md, nil },
			rating:     func() (rating.Aggregate, error) { return rating.Aggregate{}, rating.ErrNotFound },
			wantStatus: 200},
		{name: "rating down: one warning, answered without it",
			metadata:   func() (metadata.Metadata, error) { return md, nil },
			rating:     func() (rating.Aggregate, error) { return rating.Aggregate{}, down },
			wantStatus: 200, wantLevel: "WARN", wantCause: "10.0.0.7:8082: connection refused"},
		{name: "metadata down: one error, 503",
			metadata:   func() (metadata.Metadata, error) { return metadata.Metadata{}, mdDown },
			rating:     func() (rating.Aggregate, error) { return rating.Aggregate{Average: 4, Count: 1}, nil },
			wantStatus: 503, wantLevel: "ERROR", wantCause: "10.0.0.5:8081: connection refused"},
		{name: "movie not found is an answer: no line",
			metadata:   func() (metadata.Metadata, error) { return metadata.Metadata{}, metadata.ErrNotFound },
			rating:     func() (rating.Aggregate, error) { return rating.Aggregate{}, rating.ErrNotFound },
			wantStatus: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			logger, err := logging.New(&logs, logging.FormatJSON, slog.LevelInfo, "service", "movie")
			if err != nil {
				t.Fatal(err)
			}
			svc := movie.NewService(tt.metadata, movie.LogRatingFailures(tt.rating, logger))
			h := requestid.Middleware(httpapi.NewHTTPHandler(movie.MakeEndpoints(svc), logger))
			req := httptest.NewRequest("GET", "/movie?id=1", nil)
			req.Header.Set(requestid.Header, "req-7")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)

			if rec.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d", rec.Code, tt.wantStatus)
			}
			if strings.Contains(rec.Body.String(), "10.0.0.") {
				t.Errorf("the client sees the cause: %s", rec.Body)
			}
			lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
			if tt.wantLevel == "" {
				if logs.Len() != 0 {
					t.Errorf("logged %q, want nothing", logs.String())
				}
				return
			}
			if len(lines) != 1 {
				t.Fatalf("%d log lines, want exactly 1:\n%s", len(lines), logs.String())
			}
			var line struct {
				Level     string `json:"level"`
				RequestID string `json:"request_id"`
				Err       string `json:"err"`
			}
			if err := json.Unmarshal([]byte(lines[0]), &line); err != nil {
				t.Fatal(err)
			}
			if line.Level != tt.wantLevel || line.RequestID != "req-7" || !strings.Contains(line.Err, tt.wantCause) {
				t.Errorf("log line %s: want level %s, request_id req-7 and the cause %q", lines[0], tt.wantLevel, tt.wantCause)
			}
		})
	}
}
