package store_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"movieexample.com/internal/storetest"
	"movieexample.com/pkg/store"
)

func exec(query string) func(context.Context, *sql.Tx) error {
	return func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, query)
		return err
	}
}

func count(t *testing.T, db *store.DB, query string) int {
	t.Helper()
	var n int
	if err := db.Read.QueryRow(query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func TestMigrate(t *testing.T) {
	ctx := context.Background()
	create := store.Migration{Name: "create", Apply: exec("CREATE TABLE things (id INTEGER PRIMARY KEY)")}
	insert := store.Migration{Name: "insert", Apply: exec("INSERT INTO things (id) VALUES (1)")}
	for _, kind := range []store.Kind{store.SQLite, store.Postgres} {
		t.Run(string(kind), func(t *testing.T) {
			storetest.Require(t, kind)

			t.Run("each migration once, in order", func(t *testing.T) {
				db := storetest.Open(t, storetest.Config(t, kind))
				if err := db.Migrate(ctx, "things", []store.Migration{create}); err != nil {
					t.Fatal(err)
				}
				for range 2 { // the second call finds nothing to do
					if err := db.Migrate(ctx, "things", []store.Migration{create, insert}); err != nil {
						t.Fatal(err)
					}
				}
				if n := count(t, db, "SELECT COUNT(*) FROM things"); n != 1 {
					t.Errorf("rows inserted by the migration = %d, want 1", n)
				}
				if n := count(t, db, "SELECT COUNT(*) FROM things_migrations"); n != 2 {
					t.Errorf("migrations recorded = %d, want 2", n)
				}
				// An older release starting on this database leaves it alone.
				if err := db.Migrate(ctx, "things", []store.Migration{create}); err != nil {
					t.Errorf("older release: %v", err)
				}
			})

			t.Run("a failing migration is rolled back", func(t *testing.T) {
				db := storetest.Open(t, storetest.Config(t, kind))
				broken := errors.New("broken")
				half := store.Migration{Name: "half", Apply: func(ctx context.Context, tx *sql.Tx) error {
					if err := exec("CREATE TABLE half (x INTEGER)")(ctx, tx); err != nil {
						return err
					}
					return broken
				}}
				err := db.Migrate(ctx, "things", []store.Migration{create, half})
				if !errors.Is(err, broken) {
					t.Fatalf("Migrate error = %v, want the migration's", err)
				}
				if n := count(t, db, "SELECT COUNT(*) FROM things_migrations"); n != 1 {
					t.Errorf("migrations recorded = %d, want 1 (the one before the failure)", n)
				}
				// The table the failed migration made is gone with it.
				if err := db.Migrate(ctx, "things", []store.Migration{create,
					{Name: "whole", Apply: exec("CREATE TABLE half (x INTEGER)")}}); err != nil {
					t.Errorf("the fixed migration: %v", err)
				}
			})

			t.Run("owners are apart", func(t *testing.T) {
				db := storetest.Open(t, storetest.Config(t, kind))
				for _, owner := range []string{"rating", "metadata"} {
					if err := db.Migrate(ctx, owner, []store.Migration{
						{Name: "create", Apply: exec("CREATE TABLE " + owner + "_things (id INTEGER)")},
					}); err != nil {
						t.Fatalf("%s: %v", owner, err)
					}
				}
			})

			t.Run("bad owner", func(t *testing.T) {
				db := storetest.Open(t, storetest.Config(t, kind))
				for _, owner := range []string{"", "Rating", "rating; DROP TABLE x", "1rating"} {
					if err := db.Migrate(ctx, owner, []store.Migration{create}); !errors.Is(err, store.ErrBadOwner) {
						t.Errorf("Migrate(owner %q) error = %v, want ErrBadOwner", owner, err)
					}
				}
			})
		})
	}
}
