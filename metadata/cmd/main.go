// Command metadata runs one instance of the metadata service.
package main

import (
	"context"
	"io"

	"movieexample.com/metadata"
	"movieexample.com/pkg/server"
	"movieexample.com/pkg/store"
)

func main() { server.Main("metadata", run) }

// run starts the service and blocks until ctx ends; tests call it directly.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	var cfg server.Config
	fs := server.NewFlagSet("metadata", 8081, &cfg)
	databaseURL := store.AddFlag(fs, "metadata")
	logger, err := server.Load(fs, &cfg, args, getenv, stderr)
	if err != nil {
		return err
	}
	if cfg.HealthCheck { // a probe of a running instance opens no store
		return server.Probe(ctx, cfg.Port)
	}
	repo, closeRepo, err := store.OpenRepository(ctx, *databaseURL, logger,
		func() metadata.Repository { return metadata.NewMemory(metadata.Seed) },
		func(ctx context.Context, db *store.DB) (metadata.Repository, error) { return metadata.NewSQL(ctx, db) })
	if err != nil {
		return err
	}
	// After Run: the server has shut down, so no request uses the store.
	defer closeRepo()
	svc := metadata.NewService(repo)
	return server.Run(ctx, server.App{
		Config:  cfg,
		Logger:  logger,
		Routes:  metadata.NewHTTPHandler(metadata.MakeEndpoints(svc), logger),
		Metrics: server.NewMetricsRegistry(),
	})
}
