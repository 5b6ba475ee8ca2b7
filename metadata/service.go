// Package metadata is the metadata service's domain: the Metadata of a
// movie (its title, description and director), the rules it must follow,
// the Service that reads and writes it over a Repository, and the service's
// go-kit endpoints. Its adapters are beside it: httpapi serves it over HTTP
// and holds the client other services call it with, sqlstore keeps it in a
// database.
package metadata

import (
	"context"
	"fmt"

	"movieexample.com/pkg/errs"
	"movieexample.com/pkg/ident"
)

// Errors returned by the service, its repositories and its client, besides
// errs.ErrInvalid (wrapped with the reason) for a malformed request.
var (
	// ErrNotFound means no metadata exists for the requested ID.
	ErrNotFound = errs.New(errs.NotFound, "movie not found")
	// ErrUnavailable means the store could not answer now (locked by
	// other writers past its busy timeout, unreachable, restarting); the
	// same request may succeed later or on another instance.
	ErrUnavailable = errs.New(errs.Unavailable, "metadata store unavailable")
)

// Metadata describes one movie.
type Metadata struct {
	ID          string `json:"id"`
	Title       string `json:"title"`
	Description string `json:"description"`
	Director    string `json:"director"`
}

// Field limits, documented in the README.
const (
	MaxTitleLen       = 256
	MaxDescriptionLen = 4096
	MaxDirectorLen    = 256
)

// Validate returns errs.ErrInvalid (wrapped with the reason) if m cannot be
// stored.
func (m Metadata) Validate() error {
	switch {
	case !ident.Valid(m.ID):
		return fmt.Errorf("%w: id must be %s", errs.ErrInvalid, ident.Rule)
	case m.Title == "" || len(m.Title) > MaxTitleLen:
		return fmt.Errorf("%w: title must be 1 to %d bytes", errs.ErrInvalid, MaxTitleLen)
	case len(m.Description) > MaxDescriptionLen:
		return fmt.Errorf("%w: description must be at most %d bytes", errs.ErrInvalid, MaxDescriptionLen)
	case len(m.Director) > MaxDirectorLen:
		return fmt.Errorf("%w: director must be at most %d bytes", errs.ErrInvalid, MaxDirectorLen)
	}
	return nil
}

// Repository stores metadata. Its methods return ErrUnavailable (wrapped)
// when the store cannot answer now.
type Repository interface {
	// Get returns ErrNotFound if id is unknown.
	Get(ctx context.Context, id string) (Metadata, error)
	// Put creates or replaces m.
	Put(ctx context.Context, m Metadata) error
}

// Service is the metadata business API.
type Service interface {
	// Get returns the metadata of movie id: errs.ErrInvalid for a
	// malformed id, ErrNotFound for an unknown one, ErrUnavailable when the
	// store cannot answer now.
	Get(ctx context.Context, id string) (Metadata, error)
	// Put creates or replaces m; errs.ErrInvalid if m is malformed,
	// ErrUnavailable when the store cannot answer now.
	Put(ctx context.Context, m Metadata) error
}

type service struct {
	repo Repository
}

// NewService returns a Service over repo.
func NewService(repo Repository) Service {
	return service{repo: repo}
}

func (s service) Get(ctx context.Context, id string) (Metadata, error) {
	if !ident.Valid(id) {
		return Metadata{}, fmt.Errorf("%w: id must be %s", errs.ErrInvalid, ident.Rule)
	}
	return s.repo.Get(ctx, id)
}

func (s service) Put(ctx context.Context, m Metadata) error {
	if err := m.Validate(); err != nil {
		return err
	}
	return s.repo.Put(ctx, m)
}
