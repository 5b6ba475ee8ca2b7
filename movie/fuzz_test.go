package movie_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/go-kit/kit/sd"
	"github.com/prometheus/client_golang/prometheus"

	"movieexample.com/internal/hostile"
	"movieexample.com/metadata"
	"movieexample.com/movie"
	"movieexample.com/pkg/gateway"
	"movieexample.com/pkg/ident"
	"movieexample.com/rating"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// newMovie returns movie's handler over a real gateway whose only instances
// are the given upstream servers.
func newMovie(t testing.TB, metadataURL, ratingURL string) http.Handler {
	t.Helper()
	addrs := map[string]string{"metadata": hostOf(t, metadataURL), "rating": hostOf(t, ratingURL)}
	instancers := func(service string) (sd.Instancer, error) {
		return sd.FixedInstancer{addrs[service]}, nil
	}
	g := gateway.New(gateway.DefaultConfig(), instancers, discard, prometheus.NewRegistry())
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Stop)
	return movie.NewHTTPHandler(movie.MakeEndpoints(movie.NewService(g, g)), discard)
}

func hostOf(t testing.TB, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// FuzzGet feeds movie's handler requests as net/http parses them off the
// wire, with the real metadata and rating services behind a real gateway,
// so the ID also travels through the gateway's encoding and the upstreams'
// decoders. Seeds are in testdata/fuzz.
func FuzzGet(f *testing.F) {
	md := httptest.NewServer(metadata.NewHTTPHandler(metadata.MakeEndpoints(metadata.NewService(metadata.NewMemory(metadata.Seed))), discard))
	f.Cleanup(md.Close)
	rt := httptest.NewServer(rating.NewHTTPHandler(rating.MakeEndpoints(rating.NewService(rating.NewMemory(rating.Seed))), discard))
	f.Cleanup(rt.Close)
	h := newMovie(f, md.URL, rt.URL)
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
