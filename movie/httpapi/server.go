// Package httpapi is the movie service over HTTP: GET /movie.
package httpapi

import (
	"context"
	"log/slog"
	"net/http"

	"movieexample.com/movie"
	"movieexample.com/pkg/web"
)

// NewHTTPHandler serves the endpoints: GET /movie?id=ID.
func NewHTTPHandler(e movie.Endpoints, logger *slog.Logger) *http.ServeMux {
	mux := web.NewMux()
	mux.Handle("/movie", web.Methods{
		http.MethodGet: web.NewServer(e.Get, decodeGetRequest, logger),
	})
	return mux
}

func decodeGetRequest(_ context.Context, r *http.Request) (any, error) {
	q, err := web.Query(r, "id")
	if err != nil {
		return nil, err
	}
	return movie.GetRequest{ID: q.Get("id")}, nil
}
