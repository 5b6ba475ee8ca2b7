// Command rating runs one instance of the rating service.
package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"

	"movieexample.com/pkg/instance"
	"movieexample.com/pkg/store"
	"movieexample.com/pkg/storeapp"
	"movieexample.com/rating"
	"movieexample.com/rating/httpapi"
	"movieexample.com/rating/sqlstore"
)

func main() { instance.Main("rating", run) }

// service is the rating service as storeapp runs it: its repositories,
// and its routes over the service and its endpoints.
var service = storeapp.Service[rating.Repository]{
	Name:        "rating",
	DefaultPort: 8082,
	Memory:      func() rating.Repository { return rating.NewMemory(rating.Seed) },
	SQL: func(ctx context.Context, db *store.DB) (rating.Repository, error) {
		return sqlstore.New(ctx, db)
	},
	Routes: func(repo rating.Repository, logger *slog.Logger) *http.ServeMux {
		return httpapi.NewHTTPHandler(rating.MakeEndpoints(rating.NewService(repo)), logger)
	},
}

// run starts the service and blocks until ctx ends; tests call it directly.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	return storeapp.Run(ctx, service, args, getenv, stderr)
}
