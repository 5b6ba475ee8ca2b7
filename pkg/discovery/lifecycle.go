package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"movieexample.com/pkg/backoff"
)

// Config sets how an instance registers and keeps its registration alive.
type Config struct {
	// TTL is how long the registry trusts one heartbeat.
	TTL time.Duration
	// HeartbeatInterval is how often the TTL is renewed. About a third of
	// the TTL lets two heartbeats be lost before the instance turns critical.
	HeartbeatInterval time.Duration
	// DeregisterAfter is how long a critical instance stays listed before
	// the registry reaps it (what happens to an instance that crashed and so
	// never deregistered). Consul's minimum is one minute.
	DeregisterAfter time.Duration
	// StartTimeout bounds how long Register keeps retrying an unreachable
	// registry at start.
	StartTimeout time.Duration
}

// DefaultConfig returns the lifecycle defaults: 5s TTL, heartbeat every
// third of it, reaped after one critical minute, 30s to reach the registry.
func DefaultConfig() Config {
	return Config{
		TTL:               5 * time.Second,
		HeartbeatInterval: 5 * time.Second / 3,
		DeregisterAfter:   time.Minute,
		StartTimeout:      30 * time.Second,
	}
}

// Metrics counts what the instance lifecycle and the Instancers do.
type Metrics struct {
	heartbeats     *prometheus.CounterVec
	registrations  *prometheus.CounterVec
	registered     prometheus.Gauge
	ignoredEntries *prometheus.GaugeVec
	holds          *prometheus.CounterVec
}

// NewMetrics registers the discovery metrics with r. Called again with the
// same r it returns the metrics registered the first time: one instance's
// registration and its Instancers (movie has both) share its one registry.
// It panics if r holds other metrics of the same names, as
// prometheus.MustRegister does; give every instance a registry of its own.
func NewMetrics(r prometheus.Registerer) *Metrics {
	const ns, sub = "movieapp", "discovery"
	m := &Metrics{
		heartbeats: registerOnce(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "heartbeats_total",
			Help: "TTL heartbeats sent to the registry, by result (ok, failed).",
		}, []string{"result"})),
		registrations: registerOnce(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "registrations_total",
			Help: "Successful registrations, by reason (initial, reregister after the registry lost the instance).",
		}, []string{"reason"})),
		registered: registerOnce(r, prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "registered",
			Help: "1 while this instance believes it is registered and passing, 0 otherwise.",
		})),
		ignoredEntries: registerOnce(r, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "ignored_entries",
			Help: "Consul entries of a watched service left out of discovery because a movieapp instance did not register them (no TTL check of their own or no identity metadata), by target.",
		}, []string{"target"})),
		holds: registerOnce(r, prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "holds_total",
			Help: "Times every instance of a target turned critical at once and was kept in use for the grace to confirm it, rather than dropped, by target.",
		}, []string{"target"})),
	}
	// Every series exists from the start at 0, so that rate() and alerts
	// see the first failure or re-registration as an increase rather than
	// as a series appearing. The Instancers' series start with each target.
	for _, result := range []string{"ok", "failed"} {
		m.heartbeats.WithLabelValues(result)
	}
	for _, reason := range []string{"initial", "reregister"} {
		m.registrations.WithLabelValues(reason)
	}
	return m
}

// registerOnce registers c with r and returns it, or returns the collector
// r already holds for the same metric. It panics on any other error.
func registerOnce[C prometheus.Collector](r prometheus.Registerer, c C) C {
	err := r.Register(c)
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		return are.ExistingCollector.(C)
	}
	if err != nil {
		panic(err)
	}
	return c
}

// Registration is a registered instance whose TTL is being renewed in the
// background. Close it to stop the heartbeat and deregister.
type Registration struct {
	registry Registry
	inst     Instance
	cfg      Config
	log      *slog.Logger
	metrics  *Metrics

	registered atomic.Bool
	stop       context.CancelFunc
	done       sync.WaitGroup
	closeOnce  sync.Once
}

// Register registers inst, retrying with backoff while the registry cannot be
// reached, until cfg.StartTimeout or ctx ends. Once registered it starts the
// heartbeat, which re-registers the instance if the registry forgets it.
// Register returns ErrPermissionDenied and ErrInvalidInstance at once, since
// retrying cannot fix them.
func Register(ctx context.Context, registry Registry, inst Instance, cfg Config, logger *slog.Logger, m *Metrics) (*Registration, error) {
	r := &Registration{registry: registry, inst: inst, cfg: cfg, log: logger, metrics: m}

	startCtx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	delay := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := r.register(startCtx, "initial")
		if err == nil {
			break
		}
		if errors.Is(err, ErrPermissionDenied) || errors.Is(err, ErrInvalidInstance) {
			return nil, err
		}
		wait := backoff.Jitter(delay)
		logger.Warn("registry not reachable, retrying", "attempt", attempt, "retry_in", wait.Round(time.Millisecond), "err", err)
		select {
		case <-startCtx.Done():
			return nil, fmt.Errorf("gave up registering after %s (%d attempts): %w", cfg.StartTimeout, attempt, err)
		case <-time.After(wait):
		}
		delay = min(2*delay, 5*time.Second)
	}
	logger.Info("registered", "addr", inst.Addr(), "ttl", cfg.TTL)

	hbCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	r.stop = stop
	r.done.Add(1)
	go func() {
		defer r.done.Done()
		r.heartbeat(hbCtx)
	}()
	return r, nil
}

// Registered reports whether the instance is, as far as it knows, registered
// and passing. Readiness probes use it.
func (r *Registration) Registered() bool { return r.registered.Load() }

// Close stops the heartbeat, waits for it to end and only then deregisters:
// a heartbeat still running after deregistration would see the instance gone
// and register it again. Close is safe to call more than once.
func (r *Registration) Close(ctx context.Context) error {
	var err error
	r.closeOnce.Do(func() {
		r.stop()
		r.done.Wait()
		r.registered.Store(false)
		r.metrics.registered.Set(0)
		if err = r.registry.Deregister(ctx, r.inst.ID); err == nil {
			r.log.Info("deregistered")
		}
	})
	return err
}

func (r *Registration) register(ctx context.Context, reason string) error {
	if err := r.registry.Register(ctx, r.inst, r.cfg.TTL, r.cfg.DeregisterAfter); err != nil {
		return err
	}
	r.registered.Store(true)
	r.metrics.registered.Set(1)
	r.metrics.registrations.WithLabelValues(reason).Inc()
	return nil
}

func (r *Registration) heartbeat(ctx context.Context) {
	t := time.NewTicker(r.cfg.HeartbeatInterval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// Bound each call by the interval so a hung registry cannot stall
		// the loop past the next beat.
		callCtx, cancel := context.WithTimeout(ctx, r.cfg.HeartbeatInterval)
		err := r.registry.ReportHealthy(callCtx, r.inst.ID)
		if errors.Is(err, ErrNotRegistered) {
			// The registry lost us (a restarted Consul dev agent keeps no
			// state): register again rather than wait for a restart.
			if err = r.register(callCtx, "reregister"); err == nil {
				r.log.Warn("registry had forgotten this instance; registered again")
			}
		}
		cancel()
		switch {
		case err != nil:
			r.metrics.heartbeats.WithLabelValues("failed").Inc()
			if !failing {
				// Log the change of state, not every failed beat: an outage
				// would otherwise print a line per second per instance.
				r.log.Warn("heartbeat failed; will keep trying", "err", err)
				failing = true
				r.registered.Store(false)
				r.metrics.registered.Set(0)
			}
		default:
			r.metrics.heartbeats.WithLabelValues("ok").Inc()
			r.registered.Store(true)
			r.metrics.registered.Set(1)
			if failing {
				r.log.Info("heartbeat recovered")
				failing = false
			}
		}
	}
}
