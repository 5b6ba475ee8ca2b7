package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"regexp"
)

// ErrBadOwner means Migrate was given an owner name that cannot prefix a
// table name.
var ErrBadOwner = errors.New("migration owner must match [a-z][a-z0-9_]*")

// Migration is one change to a service's schema or data. Migrate applies each
// once per database, in order, in a transaction of its own.
type Migration struct {
	Name  string
	Apply func(ctx context.Context, tx *sql.Tx) error
}

var ownerPattern = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// Migrate brings owner's tables up to date: it applies the migrations the
// database has not recorded yet, in order, and records each in the table
// <owner>_migrations. Several instances may call it at once on the same
// database: they take turns (PostgreSQL's advisory lock on owner, SQLite's
// write lock), and each migration runs exactly once. A database that records
// more migrations than given (a newer release ran) is left alone. It returns
// ErrBadOwner for an owner that is not a plain lower-case identifier, and the
// failing migration's error, wrapped, after rolling it back.
func (db *DB) Migrate(ctx context.Context, owner string, migrations []Migration) error {
	if !ownerPattern.MatchString(owner) {
		return ErrBadOwner
	}
	table := owner + "_migrations"
	applied, err := db.migrationsApplied(ctx, table)
	if err != nil || applied >= len(migrations) {
		return err // the common start: nothing to do, and no lock taken
	}
	for i := range migrations {
		if err := db.migrate(ctx, owner, table, i+1, migrations[i]); err != nil {
			return err
		}
	}
	return nil
}

// migrationsApplied returns how many migrations table records, 0 if it does
// not exist yet.
func (db *DB) migrationsApplied(ctx context.Context, table string) (int, error) {
	var n int
	err := db.Read.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) FROM "+table).Scan(&n)
	if err != nil {
		// Any error here (most likely: no such table) is settled under
		// the lock in migrate, which reports real failures.
		return 0, nil
	}
	return n, nil
}

// migrate applies migration number version unless another instance did.
func (db *DB) migrate(ctx context.Context, owner, table string, version int, m Migration) (err error) {
	tx, err := db.Write.BeginTx(ctx, nil) // SQLite: BEGIN IMMEDIATE, the write lock
	if err != nil {
		return fmt.Errorf("migrate %s: %w", owner, err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if db.Kind == Postgres {
		// Held until the transaction ends. Without it, two instances'
		// CREATE TABLE IF NOT EXISTS can both miss the table and one fails
		// on PostgreSQL's catalogue unique index.
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey(owner)); err != nil {
			return fmt.Errorf("migrate %s: lock: %w", owner, err)
		}
	}
	if _, err := tx.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+table+
		" (version INTEGER PRIMARY KEY, name TEXT NOT NULL)"); err != nil {
		return fmt.Errorf("migrate %s: %w", owner, err)
	}
	var done int
	if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+table+" WHERE version = $1", version).Scan(&done); err != nil {
		return fmt.Errorf("migrate %s: %w", owner, err)
	}
	if done > 0 {
		return tx.Commit()
	}
	if err := m.Apply(ctx, tx); err != nil {
		return fmt.Errorf("migrate %s to %d (%s): %w", owner, version, m.Name, err)
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO "+table+" (version, name) VALUES ($1, $2)", version, m.Name); err != nil {
		return fmt.Errorf("migrate %s: record %d: %w", owner, version, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate %s: commit %d: %w", owner, version, err)
	}
	return nil
}

// lockKey is owner's PostgreSQL advisory lock key, stable across releases.
func lockKey(owner string) int64 {
	h := fnv.New64a()
	h.Write([]byte("movieapp migrate " + owner))
	return int64(h.Sum64())
}
