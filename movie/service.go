// Package movie is the movie service, a gateway: it answers with a movie's
// metadata and average rating, fetching both concurrently from the metadata
// and rating services, and degrades to metadata alone when rating is down.
package movie

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"movieexample.com/metadata"
	"movieexample.com/pkg/gateway"
	"movieexample.com/pkg/ident"
	"movieexample.com/rating"
)

// Errors returned by the service.
var (
	// ErrInvalidArgument means the request is malformed; the wrapping error
	// says how.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrNotFound means the metadata service does not know the movie.
	ErrNotFound = errors.New("movie not found")
	// ErrUnavailable means no metadata instance could answer.
	ErrUnavailable = errors.New("metadata service unavailable")
	// ErrBadGateway means the metadata service answered with something
	// unusable.
	ErrBadGateway = errors.New("bad answer from the metadata service")
)

// PartRating names the rating in Details.Partial when it could not be had.
const PartRating = "rating"

// Details is what movie answers: the metadata, the average rating when the
// movie has ratings, and the parts that are missing because a service failed.
type Details struct {
	Metadata metadata.Metadata `json:"metadata"`
	Rating   *float64          `json:"rating,omitempty"`
	Partial  []string          `json:"partial,omitempty"`
}

// MetadataGetter returns a movie's metadata. Implementations return
// gateway.ErrNotFound, gateway.ErrUnavailable or gateway.ErrBadResponse.
type MetadataGetter interface {
	Metadata(ctx context.Context, id string) (metadata.Metadata, error)
}

// RatingGetter returns a movie's average rating, with the same errors as
// MetadataGetter (ErrNotFound meaning "no ratings yet").
type RatingGetter interface {
	Rating(ctx context.Context, id string) (rating.Aggregate, error)
}

// Service is the movie business API.
type Service interface {
	// Get returns the details of movie id: ErrInvalidArgument for a
	// malformed id, ErrNotFound, ErrUnavailable or ErrBadGateway when the
	// metadata cannot be had. A failing rating service is not an error:
	// Details.Partial says the rating is missing.
	Get(ctx context.Context, id string) (Details, error)
}

type service struct {
	metadata MetadataGetter
	rating   RatingGetter
}

// NewService returns a Service over the two upstreams.
func NewService(m MetadataGetter, r RatingGetter) Service {
	return service{metadata: m, rating: r}
}

func (s service) Get(ctx context.Context, id string) (Details, error) {
	if !ident.Valid(id) {
		return Details{}, fmt.Errorf("%w: id must be %s", ErrInvalidArgument, ident.Rule)
	}
	var (
		wg     sync.WaitGroup
		agg    rating.Aggregate
		ratErr error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		agg, ratErr = s.rating.Rating(ctx, id)
	}()
	md, err := s.metadata.Metadata(ctx, id)
	wg.Wait()
	if err != nil {
		return Details{}, fromGateway(err)
	}
	// An answer about another movie is as unusable as a malformed one.
	if md.ID != id {
		return Details{}, fmt.Errorf("%w: asked for %q, got %q", ErrBadGateway, id, md.ID)
	}
	d := Details{Metadata: md}
	switch {
	case ratErr == nil && agg.ID != id:
		d.Partial = []string{PartRating}
	case ratErr == nil:
		d.Rating = &agg.Average
	case errors.Is(ratErr, gateway.ErrNotFound):
		// No ratings yet: the field is left out, nothing is missing.
	default:
		d.Partial = []string{PartRating}
	}
	return d, nil
}

// fromGateway converts the gateway's errors into this service's, at the
// boundary, so the transport never sees gateway types.
func fromGateway(err error) error {
	switch {
	case errors.Is(err, gateway.ErrNotFound):
		return ErrNotFound
	case errors.Is(err, gateway.ErrBadResponse):
		return fmt.Errorf("%w: %w", ErrBadGateway, err)
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}
