package movie

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"testing"

	"movieexample.com/rating"
)

type ratingErr struct{ err error }

func (r ratingErr) Get(context.Context, rating.Key) (rating.Aggregate, error) {
	return rating.Aggregate{}, r.err
}

// TestLogRatingFailuresSkipsHangUps checks that a rating call canceled
// because the client went away is not logged as a rating failure, while a
// real failure is.
func TestLogRatingFailuresSkipsHangUps(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		err     error
		wantLog bool
	}{
		{"failure", context.Background(), fmt.Errorf("rating: %w", context.DeadlineExceeded), true},
		{"client gone", canceled, fmt.Errorf("rating: %w", context.Canceled), false},
		{"no ratings yet", context.Background(), rating.ErrNotFound, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			r := LogRatingFailures(ratingErr{tt.err}, slog.New(slog.NewTextHandler(&logs, nil)))
			_, _ = r.Get(tt.ctx, rating.Key{Type: rating.RecordTypeMovie, ID: "1"})
			if got := logs.Len() > 0; got != tt.wantLog {
				t.Errorf("logged %q; want a line: %v", logs.String(), tt.wantLog)
			}
		})
	}
}
