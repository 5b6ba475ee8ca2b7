// Package storeapp runs an instance of a service that keeps its data in a
// store (pkg/store), as metadata and rating do: their mains differ only in
// the Service they describe, so the steps from flags to shutdown are written
// once, here, in order.
package storeapp

import (
	"context"
	"io"
	"log/slog"
	"net/http"

	"movieexample.com/pkg/discovery"
	"movieexample.com/pkg/instance"
	"movieexample.com/pkg/ops"
	"movieexample.com/pkg/store"
	"movieexample.com/pkg/tracing"
)

// Service describes a store-backed service to Run. R is its repository.
type Service[R any] struct {
	Name        string // registered in Consul, and the SQLite file's name
	DefaultPort int
	// Memory returns the in-process repository, for DATABASE_URL=memory.
	Memory func() R
	// SQL returns the repository in db, creating or migrating its tables.
	SQL func(ctx context.Context, db *store.DB) (R, error)
	// Routes returns the service's HTTP routes over repo.
	Routes func(repo R, logger *slog.Logger) *http.ServeMux
}

// Config is everything an instance of such a service is configured with.
type Config struct {
	instance.Config
	Store store.Config // -database-url, DATABASE_URL
}

// ParseConfig reads the configuration of an instance of service, on
// defaultPort, from the flags in args with the environment as fallback, and
// checks it.
func ParseConfig(service string, defaultPort int, args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	cfg := Config{Config: instance.DefaultConfig(service, defaultPort)}
	fs := cfg.FlagSet(stderr)
	databaseURL := fs.String("database-url", store.DefaultURL(service), store.URLUsage)
	if err := cfg.Parse(fs, args, getenv); err != nil || cfg.HealthCheck { // a probe opens no store
		return cfg, err
	}
	var err error
	cfg.Store, err = store.ParseURL(*databaseURL)
	return cfg, err
}

// LogValue logs the whole configuration, the database's password masked.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(append(c.Attrs(), slog.String("database_url", c.Store.String()))...)
}

// Run runs one instance of svc configured by args and getenv, logging to
// stderr, until ctx ends: with -healthcheck it only probes the instance
// already running; otherwise it opens the store, serves, and closes the store
// once the server has shut down.
func Run[R any](ctx context.Context, svc Service[R], args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := ParseConfig(svc.Name, svc.DefaultPort, args, getenv, stderr)
	if err != nil {
		return err
	}
	if cfg.HealthCheck {
		return ops.Probe(ctx, cfg.Port)
	}
	logger, err := instance.Logger(cfg.Config, cfg, stderr)
	if err != nil {
		return err
	}
	consul, err := discovery.NewClient(cfg.ConsulAddr)
	if err != nil {
		return err
	}
	repo, closeRepo, err := store.OpenRepository(ctx, cfg.Store, logger, svc.Memory, svc.SQL)
	if err != nil {
		return err
	}
	// After Run: the server has shut down, so no request uses the store.
	defer closeRepo()
	// Run shuts tracing down, whatever it returns.
	metrics := ops.NewRegistry()
	tr := tracing.Setup(cfg.Tracing, metrics)
	return instance.Run(ctx, instance.App{
		Config:   cfg.Config,
		Logger:   logger,
		Registry: discovery.NewConsul(consul),
		Routes:   svc.Routes(repo, logger),
		Metrics:  metrics,
		Tracing:  tr,
	})
}
