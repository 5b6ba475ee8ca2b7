package httpapi_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"movieexample.com/internal/hostile"
	"movieexample.com/movie"
	"movieexample.com/pkg/ident"
)

// FuzzGet feeds movie's handler requests as net/http parses them off the
// wire, with the real metadata and rating services behind real gateway
// upstreams, so the ID also travels through the clients' encoding and the
// upstreams' decoders. Seeds are in testdata/fuzz.
func FuzzGet(f *testing.F) {
	h := newMovie(f, serve(f, "metadata", metadataHandler()), serve(f, "rating", ratingHandler()))
	f.Fuzz(func(t *testing.T, rawQuery string) {
		rec, q, ok := hostile.Get(t, h, "/movie", rawQuery, map[string]func(string) bool{"id": ident.Valid})
		if !ok {
			return
		}
		id := q.Get("id")
		if rec.Code == http.StatusOK {
			var d movie.Details
			if err := json.Unmarshal(rec.Body.Bytes(), &d); err != nil || d.Metadata.ID != id || len(d.Partial) != 0 {
				t.Fatalf("GET id=%q answered %s", id, rec.Body)
			}
		}
	})
}
