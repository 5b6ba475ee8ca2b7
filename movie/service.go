// Package movie is the movie service's domain, a gateway's: it answers
// with a movie's metadata and average rating, fetching both concurrently
// from the metadata and rating services, and degrades to metadata alone when
// rating is down. It sees the two services through two small interfaces
// that speak their own errors; movie/cmd gives it their HTTP clients, over
// pkg/gateway.
package movie

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"movieexample.com/metadata"
	"movieexample.com/pkg/errs"
	"movieexample.com/pkg/ident"
	"movieexample.com/rating"
)

// Errors returned by the service, besides errs.ErrInvalid (wrapped with the
// reason) for a malformed request.
var (
	// ErrNotFound means the metadata service does not know the movie.
	ErrNotFound = errs.New(errs.NotFound, "movie not found")
	// ErrUnavailable means no metadata instance could answer.
	ErrUnavailable = errs.New(errs.Unavailable, "metadata service unavailable")
	// ErrBadGateway means the metadata service answered with something
	// unusable.
	ErrBadGateway = errs.New(errs.BadGateway, "bad answer from the metadata service")
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

// MetadataGetter returns a movie's metadata, as metadata.Service does:
// metadata.ErrNotFound for an unknown movie, and otherwise an error whose
// kind (pkg/errs) says whether the service could not be reached
// (Unavailable) or answered with something unusable (BadGateway).
type MetadataGetter interface {
	Get(ctx context.Context, id string) (metadata.Metadata, error)
}

// RatingGetter returns a record's average rating, as rating.Service does:
// rating.ErrNotFound when it has no rating yet, and otherwise errors of the
// same kinds as MetadataGetter's.
type RatingGetter interface {
	Get(ctx context.Context, key rating.Key) (rating.Aggregate, error)
}

// Service is the movie business API.
type Service interface {
	// Get returns the details of movie id: errs.ErrInvalid (wrapped) for a
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
		return Details{}, fmt.Errorf("%w: id must be %s", errs.ErrInvalid, ident.Rule)
	}
	var (
		wg     sync.WaitGroup
		agg    rating.Aggregate
		ratErr error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		agg, ratErr = s.rating.Get(ctx, rating.Key{Type: rating.RecordTypeMovie, ID: id})
	}()
	md, err := s.metadata.Get(ctx, id)
	wg.Wait()
	if err != nil {
		return Details{}, metadataError(err)
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
	case errors.Is(ratErr, rating.ErrNotFound):
		// No ratings yet: the field is left out, nothing is missing.
	default:
		d.Partial = []string{PartRating}
	}
	return d, nil
}

// metadataError converts a failure to get the metadata into this service's
// errors, at the boundary: a movie metadata does not know is not found; an
// unusable answer is a bad gateway; anything else, however the call failed,
// means metadata could not be had now.
func metadataError(err error) error {
	switch {
	case errors.Is(err, metadata.ErrNotFound):
		return ErrNotFound
	case errs.KindOf(err) == errs.BadGateway:
		return fmt.Errorf("%w: %w", ErrBadGateway, err)
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}
