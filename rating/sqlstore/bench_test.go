package sqlstore_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"movieexample.com/internal/storetest"
	"movieexample.com/rating"
)

// BenchmarkRepository measures each store's read (Aggregate: AVG and COUNT
// over one of 100 records' 50 ratings) and write (Put, an upsert) throughput
// from parallel goroutines, as one instance's concurrent requests would be,
// and writes spread over two instances. Reads run first, on the same data
// however long the benchmark runs:
//
//	go test -run '^$' -bench Repository -benchtime 3s ./rating/sqlstore/
//	make bench-store   # the same with a throwaway PostgreSQL
func BenchmarkRepository(b *testing.B) {
	ctx := context.Background()
	const records, ratingsEach = 100, 50
	for _, kind := range storetest.Kinds {
		b.Run(string(kind), func(b *testing.B) {
			storetest.Require(b, kind)
			c, open := backend(b, kind)
			repo := open(b, c)
			for r := range records {
				for u := range ratingsEach {
					if err := repo.Put(ctx, movie(fmt.Sprint("bench", r)), fmt.Sprint("user", u), u%5+1); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.Run("read", func(b *testing.B) {
				var n atomic.Int64
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := repo.Aggregate(ctx, movie(fmt.Sprint("bench", n.Add(1)%records))); err != nil {
							b.Fatal(err)
						}
					}
				})
			})
			write := func(repos ...rating.Repository) func(b *testing.B) {
				return func(b *testing.B) {
					var n atomic.Int64
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							i := n.Add(1)
							// New users mostly, and some replaced ratings.
							user := fmt.Sprint("writer", i%5000)
							err := repos[i%int64(len(repos))].Put(ctx, movie(fmt.Sprint("bench", i%records)), user, int(i%5)+1)
							if err != nil {
								b.Fatal(err)
							}
						}
					})
				}
			}
			b.Run("write", write(repo))
			// Two instances on one database: for SQLite, two writer
			// connections that take turns on the file lock.
			b.Run("write-2-instances", write(repo, open(b, c)))
		})
	}
}
