// Package rating is the rating service's domain: users' ratings of records
// (movies), one per user and record, and their Aggregate; the Service that
// records and averages them over a Repository, and the service's go-kit
// endpoints. Its adapters are beside it: httpapi serves it over HTTP and
// holds the client other services call it with, sqlstore keeps it in a
// database.
package rating

import (
	"context"
	"fmt"
	"math"

	"movieexample.com/pkg/errs"
	"movieexample.com/pkg/ident"
)

// Errors returned by the service, its repositories and its client, besides
// errs.ErrInvalid (wrapped with the reason) for a malformed request.
var (
	// ErrNotFound means the record has no rating yet.
	ErrNotFound = errs.New(errs.NotFound, "no ratings for this record")
	// ErrUnavailable means the store could not answer now (locked by
	// other writers past its busy timeout, unreachable, restarting); the
	// same request may succeed later or on another instance.
	ErrUnavailable = errs.New(errs.Unavailable, "rating store unavailable")
)

// RecordType is the kind of thing rated.
type RecordType string

// RecordTypeMovie is the only record type so far.
const RecordTypeMovie RecordType = "movie"

// Rating values are whole stars from MinValue to MaxValue. The ratings
// table's CHECK constraint repeats them: changing them takes a migration.
const (
	MinValue = 1
	MaxValue = 5
)

// Key names a rated record.
type Key struct {
	Type RecordType
	ID   string
}

// Aggregate is the average of a record's ratings.
type Aggregate struct {
	ID      string     `json:"id"`
	Type    RecordType `json:"type"`
	Average float64    `json:"rating"`
	Count   int        `json:"count"`
}

// Repository stores ratings, one per user and record. Its methods return
// ErrUnavailable (wrapped) when the store cannot answer now.
type Repository interface {
	// Put records user's value for key, replacing that user's earlier one.
	Put(ctx context.Context, key Key, userID string, value int) error
	// Aggregate returns the average and number of key's ratings, or
	// ErrNotFound if it has none.
	Aggregate(ctx context.Context, key Key) (Aggregate, error)
}

// Service is the rating business API.
type Service interface {
	// Get returns the average rating of key: errs.ErrInvalid for a
	// malformed key, ErrNotFound when nobody rated it yet, ErrUnavailable
	// when the store cannot answer now.
	Get(ctx context.Context, key Key) (Aggregate, error)
	// Put records user's rating of key (replacing their earlier one) and
	// returns the new average; errs.ErrInvalid for a malformed key, user
	// or value outside MinValue..MaxValue, ErrUnavailable when the store
	// cannot answer now.
	Put(ctx context.Context, key Key, userID string, value int) (Aggregate, error)
}

type service struct {
	repo Repository
}

// NewService returns a Service over repo.
func NewService(repo Repository) Service {
	return service{repo: repo}
}

func (s service) Get(ctx context.Context, key Key) (Aggregate, error) {
	if err := key.validate(); err != nil {
		return Aggregate{}, err
	}
	return s.repo.Aggregate(ctx, key)
}

func (s service) Put(ctx context.Context, key Key, userID string, value int) (Aggregate, error) {
	if err := key.validate(); err != nil {
		return Aggregate{}, err
	}
	if !ident.Valid(userID) {
		return Aggregate{}, fmt.Errorf("%w: userId must be %s", errs.ErrInvalid, ident.Rule)
	}
	if value < MinValue || value > MaxValue {
		return Aggregate{}, fmt.Errorf("%w: value must be an integer from %d to %d", errs.ErrInvalid, MinValue, MaxValue)
	}
	if err := s.repo.Put(ctx, key, userID, value); err != nil {
		return Aggregate{}, err
	}
	return s.repo.Aggregate(ctx, key)
}

// Plausible returns an error unless a is an average that a set of valid
// ratings can have: callers trust an upstream's answer no further than a
// client's request.
func (a Aggregate) Plausible() error {
	if a.Count < 1 || math.IsNaN(a.Average) || a.Average < MinValue || a.Average > MaxValue {
		return fmt.Errorf("rating %v over %d ratings is out of range", a.Average, a.Count)
	}
	return nil
}

func (k Key) validate() error {
	if k.Type != RecordTypeMovie {
		return fmt.Errorf("%w: type must be %q", errs.ErrInvalid, RecordTypeMovie)
	}
	if !ident.Valid(k.ID) {
		return fmt.Errorf("%w: id must be %s", errs.ErrInvalid, ident.Rule)
	}
	return nil
}
