package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"

	"movieexample.com/internal/storetest"
	"movieexample.com/pkg/store"
	"movieexample.com/rating"
	"movieexample.com/rating/sqlstore"
)

// backend returns a fresh store of kind and a function that opens a
// rating repository on it, as one service instance does.
func backend(t testing.TB, kind store.Kind) (store.Config, func(testing.TB, store.Config) rating.Repository) {
	return storetest.Backend(t, kind,
		func() rating.Repository { return rating.NewMemory(rating.Seed) },
		func(ctx context.Context, db *store.DB) (rating.Repository, error) { return sqlstore.New(ctx, db) })
}

func movie(id string) rating.Key { return rating.Key{Type: rating.RecordTypeMovie, ID: id} }

func wantAggregate(t *testing.T, repo rating.Repository, key rating.Key, avg float64, count int) {
	t.Helper()
	got, err := repo.Aggregate(context.Background(), key)
	if err != nil {
		t.Fatalf("Aggregate(%v): %v", key, err)
	}
	want := rating.Aggregate{ID: key.ID, Type: key.Type, Average: avg, Count: count}
	if math.Abs(got.Average-want.Average) > 1e-9 || got.ID != want.ID || got.Type != want.Type || got.Count != want.Count {
		t.Errorf("Aggregate(%v) = %+v, want %+v", key, got, want)
	}
}

func mustPut(t *testing.T, repo rating.Repository, key rating.Key, user string, value int) {
	t.Helper()
	if err := repo.Put(context.Background(), key, user, value); err != nil {
		t.Fatalf("Put(%v, %s, %d): %v", key, user, value, err)
	}
}

// TestRepository is the Repository contract, run against every store.
func TestRepository(t *testing.T) {
	for _, kind := range storetest.Kinds {
		t.Run(string(kind), func(t *testing.T) {
			storetest.Require(t, kind)
			t.Run("seeded", func(t *testing.T) {
				c, open := backend(t, kind)
				repo := open(t, c)
				wantAggregate(t, repo, movie("1"), 14.0/3, 3)
				wantAggregate(t, repo, movie("4"), 4, 1)
				if _, err := repo.Aggregate(context.Background(), movie("5")); !errors.Is(err, rating.ErrNotFound) {
					t.Errorf("Aggregate(unrated movie 5) error = %v, want ErrNotFound", err)
				}
			})

			t.Run("a user's second rating replaces the first", func(t *testing.T) {
				c, open := backend(t, kind)
				repo := open(t, c)
				mustPut(t, repo, movie("new"), "zoe", 2)
				wantAggregate(t, repo, movie("new"), 2, 1)
				mustPut(t, repo, movie("new"), "zoe", 5)
				wantAggregate(t, repo, movie("new"), 5, 1)
				mustPut(t, repo, movie("new"), "yann", 2)
				wantAggregate(t, repo, movie("new"), 3.5, 2)
			})

			t.Run("records are apart", func(t *testing.T) {
				c, open := backend(t, kind)
				repo := open(t, c)
				mustPut(t, repo, movie("10"), "zoe", 1) // "1" is a prefix of "10"
				wantAggregate(t, repo, movie("1"), 14.0/3, 3)
				wantAggregate(t, repo, movie("10"), 1, 1)
			})

			t.Run("instances agree", func(t *testing.T) {
				c, open := backend(t, kind)
				a, b := open(t, c), open(t, c)
				mustPut(t, a, movie("1"), "zoe", 1)
				wantAggregate(t, b, movie("1"), 15.0/4, 4)
				mustPut(t, b, movie("1"), "zoe", 3) // replaces what a wrote
				wantAggregate(t, a, movie("1"), 17.0/4, 4)
			})

			t.Run("concurrent writes through two instances", func(t *testing.T) {
				c, open := backend(t, kind)
				repos := []rating.Repository{open(t, c), open(t, c)}
				const users = 100
				var wg sync.WaitGroup
				errs := make(chan error, 2*users)
				sum := 0
				for i := range users {
					sum += i%5 + 1
					wg.Add(2)
					// Each user's rating, and one user's many ratings,
					// race over both instances.
					go func() {
						defer wg.Done()
						errs <- repos[i%2].Put(context.Background(), movie("crowd"), fmt.Sprintf("user%d", i), i%5+1)
					}()
					go func() {
						defer wg.Done()
						errs <- repos[(i+1)%2].Put(context.Background(), movie("one-user"), "zoe", i%5+1)
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						t.Fatalf("concurrent Put: %v", err)
					}
				}
				wantAggregate(t, repos[1], movie("crowd"), float64(sum)/users, users)
				agg, err := repos[0].Aggregate(context.Background(), movie("one-user"))
				if err != nil || agg.Count != 1 {
					t.Errorf("one user's concurrent ratings: %+v, %v; want one rating", agg, err)
				}
			})

			if kind == store.Memory {
				return // the rest is about a database outliving its users
			}

			t.Run("survives a restart, seeded once", func(t *testing.T) {
				c, open := backend(t, kind)
				t.Run("first run", func(t *testing.T) { // its handle closes when it ends
					repo := open(t, c)
					mustPut(t, repo, movie("1"), "alice", 1) // alice's seeded 5 becomes 1
					mustPut(t, repo, movie("kept"), "zoe", 4)
				})
				repo := open(t, c)
				wantAggregate(t, repo, movie("1"), 10.0/3, 3)
				wantAggregate(t, repo, movie("kept"), 4, 1)
			})

			t.Run("instances starting at once", func(t *testing.T) {
				c, open := backend(t, kind)
				storetest.StartAtOnce(t, c, 6, sqlstore.New)
				// Every instance started, so no migration ran twice (a
				// second CREATE TABLE, or a second record of a version,
				// would have failed one), and the seed is there.
				wantAggregate(t, open(t, c), movie("1"), 14.0/3, 3)
			})

			t.Run("unavailable store", func(t *testing.T) {
				c, open := backend(t, kind)
				c, breakStore := storetest.Breakable(t, c)
				repo := open(t, c)
				breakStore()
				err := repo.Put(context.Background(), movie("1"), "zoe", 1)
				if !errors.Is(err, rating.ErrUnavailable) {
					t.Errorf("Put on a broken store: error %v, want ErrUnavailable", err)
				}
				if kind == store.SQLite {
					return // a held write lock does not stop readers in WAL mode
				}
				if _, err := repo.Aggregate(context.Background(), movie("1")); !errors.Is(err, rating.ErrUnavailable) {
					t.Errorf("Aggregate on a broken store: error %v, want ErrUnavailable", err)
				}
			})
		})
	}
}
