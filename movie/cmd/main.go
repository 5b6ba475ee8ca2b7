// Command movie runs one instance of the movie gateway.
package main

import (
	"context"
	"errors"
	"io"

	"movieexample.com/movie"
	"movieexample.com/pkg/gateway"
	"movieexample.com/pkg/server"
)

func main() { server.Main("movie", run) }

// run starts the service and blocks until ctx ends; tests call it directly.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	var cfg server.Config
	fs := server.NewFlagSet("movie", 8083, &cfg)
	gw := gateway.DefaultConfig()
	fs.DurationVar(&gw.AttemptTimeout, "attempt-timeout", gw.AttemptTimeout, "timeout of one attempt on one upstream instance")
	fs.IntVar(&gw.MaxAttempts, "max-attempts", gw.MaxAttempts, "attempts per upstream call, the first included (1 disables retries)")
	fs.Float64Var(&gw.RetryRatio, "retry-ratio", gw.RetryRatio, "retry budget: retries may add this fraction of calls")
	fs.IntVar(&gw.BreakerFailures, "breaker-failures", gw.BreakerFailures, "consecutive failures that eject an instance (0 disables the breaker)")
	fs.DurationVar(&gw.BreakerCooldown, "breaker-cooldown", gw.BreakerCooldown, "how long an ejected instance is skipped before a trial call")
	fs.DurationVar(&gw.ReregisterGrace, "reregister-grace", gw.ReregisterGrace, "after Consul comes back, how long its answers may add upstream instances but not remove them (0 trusts its first answer)")
	logger, err := server.Load(fs, &cfg, args, getenv, stderr)
	if err != nil {
		return err
	}
	if gw.MaxAttempts < 1 || gw.AttemptTimeout <= 0 {
		return errors.New("max-attempts must be at least 1 and attempt-timeout positive")
	}
	consul, err := cfg.ConsulClient()
	if err != nil {
		return err
	}
	metrics := server.NewMetricsRegistry()
	// Discovery is bound to its own context, ended after the server has
	// shut down, so in-flight requests keep their instances to the end.
	watchCtx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWatch()
	g := gateway.New(gw, gateway.ConsulInstancers(watchCtx, consul, gw.ReregisterGrace, logger), logger, metrics)
	svc := movie.NewService(g, movie.LogRatingFailures(g, logger))
	return server.Run(ctx, server.App{
		Config:  cfg,
		Logger:  logger,
		Routes:  movie.NewHTTPHandler(movie.MakeEndpoints(svc), logger),
		Metrics: metrics,
		// Watching starts once registration proved Consul reachable, so the
		// first query finds the upstreams' instances rather than an error.
		Start: func(context.Context) error { return g.Start() },
		Ready: g.Ready,
		// Stop the watchers first, then cancel the blocking queries they
		// abandoned; the other order makes every watcher log a spurious
		// "context canceled" error on its way out.
		Stop: func() {
			g.Stop()
			stopWatch()
		},
	})
}
