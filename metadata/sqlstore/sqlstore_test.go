package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"movieexample.com/internal/storetest"
	"movieexample.com/metadata"
	"movieexample.com/metadata/sqlstore"
	"movieexample.com/pkg/store"
)

// backend returns a fresh store of kind and a function that opens a
// metadata repository on it, as one service instance does.
func backend(t testing.TB, kind store.Kind) (store.Config, func(testing.TB, store.Config) metadata.Repository) {
	return storetest.Backend(t, kind,
		func() metadata.Repository { return metadata.NewMemory(metadata.Seed) },
		func(ctx context.Context, db *store.DB) (metadata.Repository, error) { return sqlstore.New(ctx, db) })
}

func wantGet(t *testing.T, repo metadata.Repository, want metadata.Metadata) {
	t.Helper()
	got, err := repo.Get(context.Background(), want.ID)
	if err != nil {
		t.Fatalf("Get(%q): %v", want.ID, err)
	}
	if got != want {
		t.Errorf("Get(%q) = %+v, want %+v", want.ID, got, want)
	}
}

func mustPut(t *testing.T, repo metadata.Repository, m metadata.Metadata) {
	t.Helper()
	if err := repo.Put(context.Background(), m); err != nil {
		t.Fatalf("Put(%+v): %v", m, err)
	}
}

// TestRepository is the Repository contract, run against every store.
func TestRepository(t *testing.T) {
	heat := metadata.Metadata{ID: "heat", Title: "Heat", Director: "Michael Mann", Description: "A cop and a thief."}
	for _, kind := range storetest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			storetest.Require(t, kind)

			t.Run("seeded", func(t *testing.T) {
				c, open := backend(t, kind)
				repo := open(t, c)
				for _, m := range metadata.Seed {
					wantGet(t, repo, m)
				}
				if _, err := repo.Get(context.Background(), "unknown"); !errors.Is(err, metadata.ErrNotFound) {
					t.Errorf("Get(unknown) error = %v, want ErrNotFound", err)
				}
			})

			t.Run("put creates and replaces", func(t *testing.T) {
				c, open := backend(t, kind)
				repo := open(t, c)
				mustPut(t, repo, heat)
				wantGet(t, repo, heat)
				changed := heat
				changed.Title, changed.Description = "Heat (1995)", "" // an empty description is kept empty
				mustPut(t, repo, changed)
				wantGet(t, repo, changed)
			})

			t.Run("instances agree", func(t *testing.T) {
				c, open := backend(t, kind)
				a, b := open(t, c), open(t, c)
				mustPut(t, a, heat)
				wantGet(t, b, heat)
			})

			t.Run("concurrent writes through two instances", func(t *testing.T) {
				c, open := backend(t, kind)
				repos := []metadata.Repository{open(t, c), open(t, c)}
				const writes = 100
				var wg sync.WaitGroup
				errs := make(chan error, 2*writes)
				titles := map[string]bool{}
				for i := range writes {
					title := fmt.Sprintf("Heat, take %d", i)
					titles[title] = true
					wg.Add(2)
					go func() { // many movies
						defer wg.Done()
						m := heat
						m.ID = fmt.Sprintf("movie-%d", i)
						errs <- repos[i%2].Put(context.Background(), m)
					}()
					go func() { // one movie, many versions
						defer wg.Done()
						m := heat
						m.Title = title
						errs <- repos[(i+1)%2].Put(context.Background(), m)
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						t.Fatalf("concurrent Put: %v", err)
					}
				}
				for i := range writes {
					m := heat
					m.ID = fmt.Sprintf("movie-%d", i)
					wantGet(t, repos[(i+1)%2], m)
				}
				got, err := repos[0].Get(context.Background(), heat.ID)
				if err != nil || !titles[got.Title] || got.Director != heat.Director {
					t.Errorf("one movie written concurrently: %+v, %v; want one of the versions written", got, err)
				}
			})

			if kind == store.Memory {
				return // the rest is about a database outliving its users
			}

			t.Run("survives a restart, seeded once", func(t *testing.T) {
				c, open := backend(t, kind)
				edited := metadata.Seed[0]
				edited.Title = "Edited"
				t.Run("first run", func(t *testing.T) { // its handle closes when it ends
					repo := open(t, c)
					mustPut(t, repo, edited)
					mustPut(t, repo, heat)
				})
				repo := open(t, c)
				wantGet(t, repo, edited) // not reseeded
				wantGet(t, repo, heat)
			})

			t.Run("instances starting at once", func(t *testing.T) {
				c, open := backend(t, kind)
				storetest.StartAtOnce(t, c, 6, sqlstore.New)
				wantGet(t, open(t, c), metadata.Seed[0])
			})

			t.Run("unavailable store", func(t *testing.T) {
				c, open := backend(t, kind)
				c, breakStore := storetest.Breakable(t, c)
				repo := open(t, c)
				breakStore()
				if err := repo.Put(context.Background(), heat); !errors.Is(err, metadata.ErrUnavailable) {
					t.Errorf("Put on a broken store: error %v, want ErrUnavailable", err)
				}
				if kind == store.SQLite {
					return // a held write lock does not stop readers in WAL mode
				}
				if _, err := repo.Get(context.Background(), "1"); !errors.Is(err, metadata.ErrUnavailable) {
					t.Errorf("Get on a broken store: error %v, want ErrUnavailable", err)
				}
			})
		})
	}
}
