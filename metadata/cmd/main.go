// Command metadata runs one instance of the metadata service.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"movieexample.com/metadata"
	"movieexample.com/pkg/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		stop()
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "metadata:", err)
		os.Exit(1)
	}
}

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
		Metrics: server.NewMetricsRegistry(),
	})
}
