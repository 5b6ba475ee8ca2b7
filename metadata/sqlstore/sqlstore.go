// Package sqlstore keeps the metadata service's data in an SQL database,
// SQLite or PostgreSQL (pkg/store opens it): the repository, and the
// migrations that create its table and load the seed catalogue.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"

	"movieexample.com/metadata"
	"movieexample.com/pkg/store"
)

// SQL is a metadata.Repository in an SQL database, SQLite or PostgreSQL, shared by
// every instance that opens it. The statements are written once for both:
// each accepts $N parameters and ON CONFLICT upserts.
type SQL struct {
	db *store.DB
}

// migrations are the metadata service's schema, in order. A released entry
// never changes: a new change is a new entry.
var migrations = []store.Migration{
	{Name: "create metadata", Apply: func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `CREATE TABLE metadata (
			id          TEXT PRIMARY KEY,
			title       TEXT NOT NULL,
			description TEXT NOT NULL,
			director    TEXT NOT NULL
		)`)
		return err
	}},
	{Name: "seed", Apply: func(ctx context.Context, tx *sql.Tx) error {
		// A migration runs once per database, so a user's later change
		// to a seeded movie is never undone by a restart.
		for _, m := range metadata.Seed {
			if err := put(ctx, tx, m); err != nil {
				return err
			}
		}
		return nil
	}},
}

// New returns the repository in db, creating or migrating its tables
// (and loading Seed into a new database) first. It is safe for several
// instances to call at once. Errors are the migration's.
func New(ctx context.Context, db *store.DB) (*SQL, error) {
	if err := db.Migrate(ctx, "metadata", migrations); err != nil {
		return nil, err
	}
	return &SQL{db: db}, nil
}

// execer is what put needs of a connection pool or a transaction.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func put(ctx context.Context, db execer, m metadata.Metadata) error {
	_, err := db.ExecContext(ctx, `INSERT INTO metadata (id, title, description, director)
		VALUES ($1, $2, $3, $4)
		ON CONFLICT (id) DO UPDATE SET
			title = excluded.title, description = excluded.description, director = excluded.director`,
		m.ID, m.Title, m.Description, m.Director)
	return err
}

// Get implements metadata.Repository.
func (s *SQL) Get(ctx context.Context, id string) (metadata.Metadata, error) {
	m := metadata.Metadata{ID: id}
	err := s.db.Read.QueryRowContext(ctx, `SELECT title, description, director FROM metadata WHERE id = $1`, id).
		Scan(&m.Title, &m.Description, &m.Director)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return metadata.Metadata{}, metadata.ErrNotFound
	case err != nil:
		return metadata.Metadata{}, store.Wrap(err, "get metadata", metadata.ErrUnavailable)
	}
	return m, nil
}

// Put implements metadata.Repository.
func (s *SQL) Put(ctx context.Context, m metadata.Metadata) error {
	if err := put(ctx, s.db.Write, m); err != nil {
		return store.Wrap(err, "put metadata", metadata.ErrUnavailable)
	}
	return nil
}
