// Package sqlstore keeps the rating service's data in an SQL database,
// SQLite or PostgreSQL (pkg/store opens it): the repository, and the
// migrations that create its table and load the seed ratings.
package sqlstore

import (
	"context"
	"database/sql"

	"movieexample.com/pkg/store"
	"movieexample.com/rating"
)

// SQL is a rating.Repository in an SQL database, SQLite or PostgreSQL, shared by
// every instance that opens it. The statements are written once for both:
// each accepts $N parameters, ON CONFLICT upserts and CAST(... AS DOUBLE
// PRECISION).
type SQL struct {
	db *store.DB
}

// migrations are the rating service's schema, in order. A released entry
// never changes: a new change is a new entry.
var migrations = []store.Migration{
	{Name: "create ratings", Apply: func(ctx context.Context, tx *sql.Tx) error {
		// The primary key is the upsert's conflict target, and its
		// (record_type, record_id) prefix serves the average.
		_, err := tx.ExecContext(ctx, `CREATE TABLE ratings (
			record_type TEXT    NOT NULL,
			record_id   TEXT    NOT NULL,
			user_id     TEXT    NOT NULL,
			value       INTEGER NOT NULL CHECK (value BETWEEN 1 AND 5),
			PRIMARY KEY (record_type, record_id, user_id)
		)`)
		return err
	}},
	{Name: "seed", Apply: func(ctx context.Context, tx *sql.Tx) error {
		// A migration runs once per database, so a user's later change
		// to a seeded rating is never undone by a restart.
		for _, s := range rating.Seed {
			if err := put(ctx, tx, s.Key, s.UserID, s.Value); err != nil {
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
	if err := db.Migrate(ctx, "rating", migrations); err != nil {
		return nil, err
	}
	return &SQL{db: db}, nil
}

// execer is what put needs of a connection pool or a transaction.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func put(ctx context.Context, db execer, key rating.Key, userID string, value int) error {
	_, err := db.ExecContext(ctx, `INSERT INTO ratings (record_type, record_id, user_id, value)
		VALUES ($1, $2, $3, $4)
		ON CONFLICT (record_type, record_id, user_id) DO UPDATE SET value = excluded.value`,
		string(key.Type), key.ID, userID, value)
	return err
}

// Put implements rating.Repository. One statement: two instances taking the same
// user's PUTs at once leave one row, the last to commit.
func (s *SQL) Put(ctx context.Context, key rating.Key, userID string, value int) error {
	if err := put(ctx, s.db.Write, key, userID, value); err != nil {
		return store.Wrap(err, "put rating", rating.ErrUnavailable)
	}
	return nil
}

// Aggregate implements rating.Repository.
func (s *SQL) Aggregate(ctx context.Context, key rating.Key) (rating.Aggregate, error) {
	var (
		count int
		avg   float64
	)
	err := s.db.Read.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(AVG(CAST(value AS DOUBLE PRECISION)), 0)
		FROM ratings WHERE record_type = $1 AND record_id = $2`,
		string(key.Type), key.ID).Scan(&count, &avg)
	if err != nil {
		return rating.Aggregate{}, store.Wrap(err, "aggregate ratings", rating.ErrUnavailable)
	}
	if count == 0 {
		return rating.Aggregate{}, rating.ErrNotFound
	}
	return rating.Aggregate{ID: key.ID, Type: key.Type, Average: avg, Count: count}, nil
}
