// Command movie runs one instance of the movie gateway.
package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	mdhttp "movieexample.com/metadata/httpapi"
	"movieexample.com/movie"
	"movieexample.com/movie/httpapi"
	"movieexample.com/pkg/discovery"
	"movieexample.com/pkg/gateway"
	"movieexample.com/pkg/instance"
	"movieexample.com/pkg/ops"
	"movieexample.com/pkg/tracing"
	"movieexample.com/pkg/web"
	rthttp "movieexample.com/rating/httpapi"
)

func main() { instance.Main("movie", run) }

// config is everything a movie instance is configured with.
type config struct {
	instance.Config
	Gateway gateway.Config // how each upstream is called
	// ReregisterGrace is how long after Consul comes back from an outage
	// its answers may add upstream instances but not remove them: a Consul
	// that lost its state lists nothing until the instances re-register at
	// their next heartbeat.
	ReregisterGrace time.Duration
}

// parseConfig reads the configuration from the flags in args, with the
// environment as fallback, and checks it.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	cfg := config{
		Config:          instance.DefaultConfig("movie", 8083),
		Gateway:         gateway.DefaultConfig(),
		ReregisterGrace: discovery.DefaultGrace,
	}
	fs := cfg.FlagSet(stderr)
	gw := &cfg.Gateway
	fs.DurationVar(&gw.AttemptTimeout, "attempt-timeout", gw.AttemptTimeout, "timeout of one attempt on one upstream instance")
	fs.IntVar(&gw.MaxAttempts, "max-attempts", gw.MaxAttempts, "attempts per upstream call, the first included (1 disables retries)")
	fs.Float64Var(&gw.RetryRatio, "retry-ratio", gw.RetryRatio, "retry budget: retries may add this fraction of calls")
	fs.IntVar(&gw.BreakerFailures, "breaker-failures", gw.BreakerFailures, "consecutive failures that eject an instance (0 disables the breaker)")
	fs.DurationVar(&gw.BreakerCooldown, "breaker-cooldown", gw.BreakerCooldown, "how long an ejected instance is skipped before a trial call")
	fs.TextVar(&gw.Balancer, "balancer", gw.Balancer, "how a call picks an upstream instance: random (weighted by each instance's -weight) p2c (two weighted random draws, the one with fewer calls in flight) or p2c-ewma (the one with the lower latency estimate times calls in flight)")
	fs.StringVar(&gw.CanaryTag, "canary-tag", gw.CanaryTag, "a tag that makes the upstream instances carrying it a canary subset, sent -canary-percent of the calls (empty: no canary)")
	fs.Float64Var(&gw.CanaryPercent, "canary-percent", gw.CanaryPercent, "percent of the calls to each upstream sent to its -canary-tag instances (0 to 100)")
	fs.DurationVar(&cfg.ReregisterGrace, "reregister-grace", cfg.ReregisterGrace, "after Consul comes back, how long its answers may add upstream instances but not remove them; and how long instances that all turned critical at once stay in use (0 trusts every answer)")
	if err := cfg.Parse(fs, args, getenv); err != nil {
		return cfg, err
	}
	return cfg, cfg.Gateway.Check()
}

// LogValue logs the whole configuration.
func (c config) LogValue() slog.Value {
	gw := c.Gateway
	return slog.GroupValue(append(c.Attrs(),
		slog.Duration("attempt_timeout", gw.AttemptTimeout), slog.Int("max_attempts", gw.MaxAttempts),
		slog.Duration("backoff", gw.Backoff), slog.Float64("retry_ratio", gw.RetryRatio),
		slog.Float64("min_retries_per_second", gw.MinRetriesPerSecond),
		slog.Int("breaker_failures", gw.BreakerFailures), slog.Duration("breaker_cooldown", gw.BreakerCooldown),
		slog.String("balancer", string(gw.Balancer)), slog.String("canary_tag", gw.CanaryTag), slog.Float64("canary_percent", gw.CanaryPercent),
		slog.Duration("reregister_grace", c.ReregisterGrace))...)
}

// run starts the service and blocks until ctx ends; tests call it directly.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
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
	client, err := discovery.NewClient(cfg.ConsulAddr)
	if err != nil {
		return err
	}
	metrics := ops.NewRegistry()
	tr := tracing.Setup(cfg.Tracing, metrics)
	// A span per upstream attempt when tracing, none at all otherwise.
	if tp := tr.TracerProvider(); tp != nil {
		cfg.Gateway.Tracer = tp.Tracer("movieexample.com/pkg/gateway")
	}
	gm := gateway.NewMetrics(metrics)
	// A transport, and so a connection pool, per upstream: every call takes
	// the pool's lock twice, and one pool for both upstreams was the most
	// contended lock in movie under load.
	md := gateway.New("metadata", mdhttp.NewFactory(web.NewTransport()), cfg.Gateway, gm, logger)
	// Movie answers without a rating but not without metadata: only rating
	// fails fast when every instance is ejected.
	ratingCfg := cfg.Gateway
	ratingCfg.FailFast = true
	rt := gateway.New("rating", rthttp.NewFactory(web.NewTransport()), ratingCfg, gm, logger)
	svc := movie.NewService(mdhttp.NewClient(md.Endpoint()), movie.LogRatingFailures(rthttp.NewClient(rt.Endpoint()), logger))

	dm := discovery.NewMetrics(metrics)
	w := &watch{newInstancer: func(ctx context.Context, service string) *discovery.Instancer {
		return discovery.NewInstancer(ctx, client, service, cfg.ReregisterGrace, logger, dm)
	}}
	return instance.Run(ctx, instance.App{
		Config:   cfg.Config,
		Logger:   logger,
		Registry: discovery.NewConsul(client),
		Routes:   httpapi.NewHTTPHandler(movie.MakeEndpoints(svc), logger),
		Metrics:  metrics,
		// Watching starts once registration proved Consul reachable, so the
		// first query finds the upstreams' instances rather than an error.
		Start: func(ctx context.Context) error {
			w.start(ctx, map[string]*gateway.Upstream{"metadata": md, "rating": rt})
			return nil
		},
		Ready:   func() error { return errors.Join(md.Ready(), rt.Ready()) },
		Stop:    w.stop,
		Tracing: tr,
	})
}

// watch feeds each upstream the instances Consul lists for it.
type watch struct {
	newInstancer func(ctx context.Context, service string) *discovery.Instancer

	upstreams  []*gateway.Upstream
	instancers []*discovery.Instancer
}

// start watches the instances of each service for its upstream. The watch
// outlives ctx, which ends at the signal: in-flight requests keep their
// instances until stop, after the server has shut down.
func (w *watch) start(ctx context.Context, upstreams map[string]*gateway.Upstream) {
	for service, u := range upstreams {
		in := w.newInstancer(context.WithoutCancel(ctx), service)
		u.Watch(in)
		w.upstreams = append(w.upstreams, u)
		w.instancers = append(w.instancers, in)
	}
}

// stop stops the upstreams following the instancers, then the instancers
// and their blocking queries: in the other order every upstream would see
// its instancer's last, canceled query as an error.
func (w *watch) stop() {
	for _, u := range w.upstreams {
		u.Stop()
	}
	for _, in := range w.instancers {
		in.Stop()
	}
}
