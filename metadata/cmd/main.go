// Command metadata runs one instance of the metadata service.
package main

import (
	"context"
	"io"

	"movieexample.com/metadata"
	"movieexample.com/pkg/server"
)

func main() { server.Main("metadata", run) }

// run starts the service and blocks until ctx ends; tests call it directly.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	var cfg server.Config
	fs := server.NewFlagSet("metadata", 8081, &cfg)
	logger, err := server.Load(fs, &cfg, args, getenv, stderr)
	if err != nil {
		return err
	}
	svc := metadata.NewService(metadata.NewMemory(metadata.Seed))
	return server.Run(ctx, server.App{
		Config:  cfg,
		Logger:  logger,
		Handler: metadata.NewHTTPHandler(metadata.MakeEndpoints(svc), logger),
		Metrics: server.NewMetricsRegistry(cfg.Service),
	})
}
