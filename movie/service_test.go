package movie

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"movieexample.com/metadata"
	"movieexample.com/pkg/errs"
	"movieexample.com/pkg/gateway"
	"movieexample.com/pkg/web"
	"movieexample.com/rating"
)

// The services themselves, in process, are what movie can be built over as
// well as their HTTP clients (movie/httpapi's tests assert those).
var (
	_ MetadataGetter = metadata.Service(nil)
	_ RatingGetter   = rating.Service(nil)
)

var (
	shawshank = metadata.Metadata{ID: "1", Title: "The Shawshank Redemption", Director: "Frank Darabont"}
	fourHalf  = rating.Aggregate{ID: "1", Type: rating.RecordTypeMovie, Average: 4.5, Count: 2}
)

// TestOverInProcessServices builds movie over the real metadata and rating
// services, no transport between them: the services' own errors are what
// movie understands.
func TestOverInProcessServices(t *testing.T) {
	svc := NewService(
		metadata.NewService(metadata.NewMemory(metadata.Seed)),
		rating.NewService(rating.NewMemory(rating.Seed)))
	shawshankAvg := 14.0 / 3 // the seeded 5, 5 and 4
	tests := []struct {
		name    string
		id      string
		want    Details
		wantErr error
	}{
		{name: "metadata and rating", id: "1", want: Details{Metadata: metadata.Seed[0], Rating: &shawshankAvg}},
		{name: "no ratings yet: rating left out", id: "5", want: Details{Metadata: metadata.Seed[4]}},
		{name: "unknown movie", id: "999", wantErr: ErrNotFound},
		{name: "malformed id", id: "a b", wantErr: errs.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := svc.Get(context.Background(), tt.id)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Get(%q) error = %v, want %v", tt.id, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Get(%q): %v", tt.id, err)
			}
			if got.Metadata != tt.want.Metadata || len(got.Partial) != 0 ||
				(got.Rating == nil) != (tt.want.Rating == nil) || (got.Rating != nil && *got.Rating != *tt.want.Rating) {
				t.Errorf("Get(%q) = %s, want %s", tt.id, show(got), show(tt.want))
			}
		})
	}
}

// show formats d with its rating's value rather than its address.
func show(d Details) string {
	r := "none"
	if d.Rating != nil {
		r = fmt.Sprint(*d.Rating)
	}
	return fmt.Sprintf("{Metadata:%+v Rating:%s Partial:%v}", d.Metadata, r, d.Partial)
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

func (w waitingMetadata) Get(context.Context, string) (metadata.Metadata, error) {
	return shawshank, w.wait()
}

type waitingRating struct{ wait func() error }

func (w waitingRating) Get(context.Context, rating.Key) (rating.Aggregate, error) {
	return fourHalf, w.wait()
}

func TestMetadataErrorsBecomeServiceErrors(t *testing.T) {
	tests := []struct {
		name string
		in   error
		want error
	}{
		{"not found", metadata.ErrNotFound, ErrNotFound},
		{"not found, wrapped", fmt.Errorf("get: %w", metadata.ErrNotFound), ErrNotFound},
		{"no instance answered", gateway.ErrUnavailable, ErrUnavailable},
		{"an instance answered 5xx", fmt.Errorf("%w 503", web.ErrUpstreamStatus), ErrUnavailable},
		{"bad answer", web.ErrBadResponse, ErrBadGateway},
		{"bad answer, wrapped", fmt.Errorf("%w: unexpected end of JSON input", web.ErrBadResponse), ErrBadGateway},
		{"anything else", errors.New("anything else"), ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := metadataError(tt.in); !errors.Is(got, tt.want) {
				t.Errorf("metadataError(%v) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}
