// Package gateway is client-side load balancing over any go-kit
// sd.Instancer and sd.Factory: an Upstream sends each call to a random live
// instance, retries a failed attempt on another one within a per-attempt
// timeout, the caller's deadline and a retry budget, and ejects an instance
// that keeps failing with a circuit breaker of its own, long before the
// registry's health checks notice. It knows no service: what a call is, and
// how an instance is reached, is the factory's business.
package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/sd"
	"go.opentelemetry.io/otel/trace"

	"movieexample.com/pkg/errs"
)

// ErrUnavailable means no instance answered: none is discovered, every
// attempt failed, or the deadline passed. An instance's own answer (a
// not-found, a bad response) is returned as the factory's endpoint gave it.
var ErrUnavailable = errs.New(errs.Unavailable, "upstream unavailable")

// Config tunes an Upstream. DefaultConfig's values are what the README's
// resilience figures were measured with.
type Config struct {
	// AttemptTimeout bounds one attempt on one instance.
	AttemptTimeout time.Duration
	// MaxAttempts bounds attempts per call, the first one included.
	MaxAttempts int
	// Backoff is the base of the jittered pause before a retry.
	Backoff time.Duration
	// RetryRatio is the retry budget: retries may add at most this fraction
	// of calls (plus MinRetriesPerSecond), so a sick upstream is not
	// hammered by retries on top of its load.
	RetryRatio          float64
	MinRetriesPerSecond float64
	// BreakerFailures consecutive failures eject an instance for
	// BreakerCooldown, after which one trial call decides; 0 disables it.
	BreakerFailures int
	BreakerCooldown time.Duration
	// FailFast, when every instance is ejected, fails a call at once: set
	// it for an upstream the caller can answer without. Otherwise the
	// instances are tried anyway, breakers bypassed (see Upstream.call).
	FailFast bool

	// Balancer picks the instance of each attempt: Random (weighted by
	// each instance's registered weight) or P2C.
	Balancer Balancer
	// CanaryTag, if set, makes the instances registered with that tag a
	// subset that gets CanaryPercent of the calls (0 to 100), the others
	// the rest. With no canary instance every call goes to the others, and
	// with no other instance to the canaries; a retry tries the rest of the
	// call's subset first, then the other.
	CanaryTag     string
	CanaryPercent float64

	// Tracer, if set, makes a client span of every attempt, and of every
	// instance skipped for its open breaker (gateway/trace.go); nil makes
	// no span at all, at no cost.
	Tracer trace.Tracer
}

// DefaultConfig returns the tuned defaults.
func DefaultConfig() Config {
	return Config{
		AttemptTimeout:      500 * time.Millisecond,
		MaxAttempts:         3,
		Backoff:             5 * time.Millisecond,
		RetryRatio:          0.2,
		MinRetriesPerSecond: 10,
		BreakerFailures:     5,
		// Short: every instance of an upstream ejected at once by one
		// stall of the host stays ejected this long after it ends, while
		// a trial call to an instance that is really gone costs one
		// refused connection (or one attempt timeout) per cooldown.
		BreakerCooldown: time.Second,
		Balancer:        Random,
	}
}

// Check returns an error if c cannot work.
func (c Config) Check() error {
	if c.MaxAttempts < 1 || c.AttemptTimeout <= 0 {
		return errors.New("max-attempts must be at least 1 and attempt-timeout positive")
	}
	if _, err := ParseBalancer(string(c.Balancer)); err != nil {
		return err
	}
	if c.CanaryPercent < 0 || c.CanaryPercent > 100 {
		return fmt.Errorf("canary percent %g: want 0 to 100", c.CanaryPercent)
	}
	return nil
}

// Upstream is one target service: its discovered instances, one endpoint
// (with its own circuit breaker) per instance, and the retry policy.
type Upstream struct {
	name     string
	cfg      Config
	factory  sd.Factory
	log      *slog.Logger
	budget   *retryBudget
	m        upstreamMetrics
	endpoint endpoint.Endpoint
	spanName string // of every attempt's span

	instances atomic.Int64 // discovered instances, for readiness
	instancer sd.Instancer
	// set is the callable instances, replaced by watch on every event
	// while calls read it: a service serves before it registers, and
	// movie starts discovery only once registered, so until then calls
	// find none.
	set      atomic.Pointer[members]
	events   chan sd.Event
	quit     chan struct{}
	watching sync.WaitGroup

	// lastErr is the last discovery error, nil since the last success:
	// readiness says why no instance is known.
	lastErr atomic.Pointer[error]
}

// New returns the Upstream called name (its metrics' target label), whose
// instances' endpoints come from factory. Call Watch to give it instances.
func New(name string, factory sd.Factory, cfg Config, m *Metrics, logger *slog.Logger) *Upstream {
	u := &Upstream{
		name:     name,
		cfg:      cfg,
		log:      logger.With("target", name),
		budget:   newRetryBudget(cfg.RetryRatio, cfg.MinRetriesPerSecond),
		m:        m.forTarget(name),
		spanName: name + " attempt",
	}
	u.factory = u.perInstance(factory)
	u.endpoint = instrumenting(u.m)(u.call)
	return u
}

// Endpoint returns the endpoint that balances calls over the instances:
// what a service's client calls. It returns ErrUnavailable when no instance
// answers, and an instance's own error for an answer it refused.
func (u *Upstream) Endpoint() endpoint.Endpoint { return u.endpoint }

// Watch starts following instancer's instances; call it once. The
// instancer stays its creator's to stop, after Stop.
func (u *Upstream) Watch(instancer sd.Instancer) {
	u.instancer = instancer
	// The instancer sends to registered channels while holding its lock,
	// so this one is buffered and always drained until deregistered.
	u.events = make(chan sd.Event, 1)
	u.quit = make(chan struct{})
	u.watching.Add(1)
	go u.watch()
	instancer.Register(u.events)
}

// Stop stops following the instances and waits for that to end.
func (u *Upstream) Stop() {
	if u.instancer == nil {
		return
	}
	u.instancer.Deregister(u.events)
	close(u.quit)
	u.watching.Wait()
	if set := u.set.Swap(nil); set != nil {
		set.close()
	}
}

// Ready returns an error if no instance is discovered, with the last
// discovery error if there is one, or if none of the instances discovered
// could be given an endpoint (the factory refused them all).
func (u *Upstream) Ready() error {
	if u.instances.Load() > 0 {
		if set := u.set.Load(); set != nil && len(set.all) > 0 {
			return nil
		}
		return fmt.Errorf("%d %s instances discovered, none callable (see the log)", u.instances.Load(), u.name)
	}
	if p := u.lastErr.Load(); p != nil {
		return fmt.Errorf("no %s instance discovered: %w", u.name, *p)
	}
	return fmt.Errorf("no %s instance discovered", u.name)
}

// watch follows the instances: the members calls pick from, readiness,
// the gauge and the log. On a discovery error it keeps the last known
// members, and the count: the instances are still there, only the registry
// is not.
func (u *Upstream) watch() {
	defer u.watching.Done()
	var (
		last []string
		seen bool
	)
	for {
		select {
		case <-u.quit:
			return
		case ev := <-u.events:
			if ev.Err != nil {
				u.lastErr.Store(&ev.Err)
				continue
			}
			u.lastErr.Store(nil)
			// Sorted in a copy: the instancer's slice is not ours.
			ev.Instances = slices.Sorted(slices.Values(ev.Instances))
			u.set.Store(u.update(u.set.Load(), ev.Instances))
			// Logged on any change of the set, not only of its size: a
			// rolling restart replaces instances one for one.
			if !seen || !slices.Equal(last, ev.Instances) {
				u.log.Info("discovered instances changed", "count", len(ev.Instances), "instances", ev.Instances)
			}
			last, seen = ev.Instances, true
			u.instances.Store(int64(len(ev.Instances)))
			u.m.instances.Set(float64(len(ev.Instances)))
		}
	}
}
