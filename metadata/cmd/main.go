// Command metadata runs one instance of the metadata service.
package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"

	"movieexample.com/metadata"
	"movieexample.com/metadata/httpapi"
	"movieexample.com/metadata/sqlstore"
	"movieexample.com/pkg/instance"
	"movieexample.com/pkg/store"
	"movieexample.com/pkg/storeapp"
)

func main() { instance.Main("metadata", run) }

// service is the metadata service as storeapp runs it: its repositories,
// and its routes over the service and its endpoints.
var service = storeapp.Service[metadata.Repository]{
	Name:        "metadata",
	DefaultPort: 8081,
	Memory:      func() metadata.Repository { return metadata.NewMemory(metadata.Seed) },
	SQL: func(ctx context.Context, db *store.DB) (metadata.Repository, error) {
		return sqlstore.New(ctx, db)
	},
	Routes: func(repo metadata.Repository, logger *slog.Logger) *http.ServeMux {
		return httpapi.NewHTTPHandler(metadata.MakeEndpoints(metadata.NewService(repo)), logger)
	},
}

// run starts the service and blocks until ctx ends; tests call it directly.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	return storeapp.Run(ctx, service, args, getenv, stderr)
}
