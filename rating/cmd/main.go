// Command rating runs one instance of the rating service.
package main

import (
	"context"
	"io"

	"movieexample.com/pkg/server"
	"movieexample.com/pkg/store"
	"movieexample.com/rating"
)

func main() { server.Main("rating", run) }

// run starts the service and blocks until ctx ends; tests call it directly.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	var cfg server.Config
	fs := server.NewFlagSet("rating", 8082, &cfg)
	databaseURL := store.AddFlag(fs, "rating")
	logger, err := server.Load(fs, &cfg, args, getenv, stderr)
	if err != nil {
		return err
	}
	if cfg.HealthCheck { // a probe of a running instance opens no store
		return server.Probe(ctx, cfg.Port)
	}
	repo, closeRepo, err := store.OpenRepository(ctx, *databaseURL, logger,
		func() rating.Repository { return rating.NewMemory(rating.Seed) },
		func(ctx context.Context, db *store.DB) (rating.Repository, error) { return rating.NewSQL(ctx, db) })
	if err != nil {
		return err
	}
	// After Run: the server has shut down, so no request uses the store.
	defer closeRepo()
	svc := rating.NewService(repo)
	return server.Run(ctx, server.App{
		Config:  cfg,
		Logger:  logger,
		Routes:  rating.NewHTTPHandler(rating.MakeEndpoints(svc), logger),
		Metrics: server.NewMetricsRegistry(),
	})
}
