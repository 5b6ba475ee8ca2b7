package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/sd"
	"github.com/sony/gobreaker"
)

// upstream is one target service: its discovered instances, one endpoint
// (with its own circuit breaker) per instance, and the retry policy.
type upstream struct {
	name string
	cfg  Config
	// failFast: when every instance is ejected, fail the call at once,
	// because the caller has a fallback (movie answers without a rating).
	// Otherwise the instances are tried anyway, breakers bypassed: see try.
	failFast   bool
	instancers InstancerFunc
	factory    sd.Factory
	log        *slog.Logger
	budget     *retryBudget
	m          upstreamMetrics

	instances atomic.Int64 // discovered instances, for readiness
	instancer sd.Instancer
	// endpointer is set by start while requests may already be arriving
	// (a service serves before it registers, and movie starts discovery
	// only once registered): until then calls find no instance.
	endpointer atomic.Pointer[sd.DefaultEndpointer]
	events     chan sd.Event
	quit       chan struct{}
	watching   sync.WaitGroup

	// lastErr is the last discovery error, nil since the last success:
	// readiness says why no instance is known.
	lastErr atomic.Pointer[error]
}

func newUpstream(name string, cfg Config, failFast bool, instancers InstancerFunc, f sd.Factory, m *metrics, logger *slog.Logger) *upstream {
	u := &upstream{
		name:       name,
		cfg:        cfg,
		failFast:   failFast,
		instancers: instancers,
		log:        logger.With("target", name),
		budget:     newRetryBudget(cfg.RetryRatio, cfg.MinRetriesPerSecond),
		m:          m.forTarget(name),
	}
	u.factory = u.withBreaker(f)
	return u
}

func (u *upstream) start() error {
	instancer, err := u.instancers(u.name)
	if err != nil {
		return fmt.Errorf("watch %s instances: %w", u.name, err)
	}
	u.instancer = instancer
	// The endpointer only repeats the instancer's errors: keep them at debug.
	u.endpointer.Store(sd.NewEndpointer(instancer, u.factory, kitLogger(u.log, slog.LevelDebug)))
	// The instancer sends to registered channels while holding its lock,
	// so this one is buffered and always drained until deregistered.
	u.events = make(chan sd.Event, 1)
	u.quit = make(chan struct{})
	u.watching.Add(1)
	go u.watch()
	instancer.Register(u.events)
	return nil
}

func (u *upstream) stop() {
	if u.instancer == nil {
		return
	}
	u.instancer.Deregister(u.events)
	close(u.quit)
	u.watching.Wait()
	u.endpointer.Load().Close()
	u.instancer.Stop()
}

// watch follows the instances for readiness, the gauge and the log.
// On a discovery error the endpointer keeps the last known endpoints, and
// so does the count: the instances are still there, only Consul is not.
func (u *upstream) watch() {
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
			slices.Sort(ev.Instances)
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

// discoveryErr returns the last discovery error, or nil if the last lookup
// succeeded.
func (u *upstream) discoveryErr() error {
	if p := u.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

// withBreaker gives every instance's endpoint a circuit breaker of its own,
// so an instance that keeps failing is skipped at once instead of costing
// each request a failed attempt until Consul's TTL marks it critical. The
// endpoint cache keeps an endpoint, and so its breaker, for as long as the
// instance stays discovered.
func (u *upstream) withBreaker(f sd.Factory) sd.Factory {
	if u.cfg.BreakerFailures <= 0 {
		return f
	}
	return func(instance string) (endpoint.Endpoint, io.Closer, error) {
		ep, closer, err := f(instance)
		if err != nil {
			return nil, nil, err
		}
		cb := gobreaker.NewCircuitBreaker(gobreaker.Settings{
			Name:        u.name + "@" + instance,
			MaxRequests: 1,
			Timeout:     u.cfg.BreakerCooldown,
			ReadyToTrip: func(c gobreaker.Counts) bool {
				return c.ConsecutiveFailures >= uint32(u.cfg.BreakerFailures)
			},
			IsSuccessful: func(err error) bool {
				// An answer, even "not found", is a healthy instance; a
				// call abandoned by our own caller says nothing about it.
				return err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, context.Canceled)
			},
			OnStateChange: func(name string, from, to gobreaker.State) {
				u.log.Warn("circuit breaker changed state", "instance", instance, "from", from.String(), "to", to.String())
				if to == gobreaker.StateOpen {
					u.m.ejections.Inc()
				}
			},
		})
		return func(ctx context.Context, req any) (any, error) {
			resp, err := cb.Execute(func() (any, error) { return ep(ctx, req) })
			if skipped(err) && ctx.Value(bypassBreaker{}) != nil {
				return ep(ctx, req)
			}
			return resp, err
		}, closer, nil
	}
}

// bypassBreaker marks the context of an attempt made while every instance
// is ejected: the breaker lets it through (see try).
type bypassBreaker struct{}

// call sends req to a random instance, retrying a failed attempt on the
// next instance (in a random rotation, so a retry avoids the instance that
// just failed whenever there is another) within the caller's deadline, the
// per-attempt timeout and the retry budget. It does what go-kit's lb.Retry
// does not: it never retries the same instance while another is untried,
// skips open-circuited instances without spending an attempt, and wraps a
// deadline in ErrUnavailable instead of returning a bare
// context.DeadlineExceeded.
//
// When every instance is ejected, an upstream with a fallback (failFast)
// fails at once; one without tries them anyway, as Envoy's panic threshold
// does. Every breaker open at once is more often one event that all of them
// saw (a pause of this process or of the whole host, a stall of the whole
// service shorter than a retry) than every instance broken, and failing
// fast would then turn a blip into a cooldown's worth of errors for a call
// that has no answer without the upstream. The retry budget still bounds
// what the attempts add.
func (u *upstream) call(ctx context.Context, req any) (any, error) {
	start := time.Now()
	resp, err := u.try(ctx, req)
	u.m.observe(err, time.Since(start))
	return resp, err
}

func (u *upstream) try(ctx context.Context, req any) (any, error) {
	u.budget.deposit()
	var eps []endpoint.Endpoint
	if e := u.endpointer.Load(); e != nil {
		eps, _ = e.Endpoints() // errors only with InvalidateOnError, which is not set
	}
	n := len(eps)
	if n == 0 {
		return nil, fmt.Errorf("%w: no %s instance discovered", ErrUnavailable, u.name)
	}
	first := rand.IntN(n)
	var (
		lastErr   error
		attempts  int // real attempts made, skipped instances not counted
		paid      int // retries paid for with the budget and a backoff
		skips     int // instances skipped in a row for an open breaker
		panicking bool
	)
	// The loop ends: fewer than n skips separate two real attempts, and n
	// in a row end it (failFast) or end skipping (panicking bypasses the
	// breakers).
	for i := 0; attempts < u.cfg.MaxAttempts; i++ {
		// Every attempt after the first is a retry, paid for once: an
		// instance skipped for its open breaker does not pay again, and
		// neither does it let the next attempt go unpaid.
		if attempts > paid {
			if !u.budget.withdraw() {
				u.m.budgetExhausted.Inc()
				break
			}
			paid = attempts
			u.m.retries.Inc()
			if err := sleep(ctx, jitter(u.cfg.Backoff<<(attempts-1))); err != nil {
				break
			}
		}
		actx, cancel := context.WithTimeout(ctx, u.cfg.AttemptTimeout)
		if panicking {
			actx = context.WithValue(actx, bypassBreaker{}, true)
		}
		resp, err := eps[(first+i)%n](actx, req)
		cancel()
		if err == nil {
			return resp, nil
		}
		lastErr = err
		if skipped(err) {
			if skips++; skips < n {
				continue
			}
			// A whole rotation skipped: every instance is ejected.
			if u.failFast || panicking {
				break
			}
			panicking = true
			u.m.panics.Inc()
			continue
		}
		skips = 0
		attempts++
		if !retryable(err) {
			return nil, err
		}
		if ctx.Err() != nil {
			break
		}
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrUnavailable, u.name, ctx.Err())
	}
	return nil, fmt.Errorf("%w: %s: %w", ErrUnavailable, u.name, lastErr)
}

// skipped reports an attempt that never reached an instance because its
// breaker is open (or half-open with its one trial call already out).
func skipped(err error) bool {
	return errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests)
}

// retryable reports whether another instance might answer where this one
// failed: connection errors, timeouts and 5xx, but never an answer (404,
// other 4xx) or a response we could not trust.
func retryable(err error) bool {
	var se *statusError
	var ne net.Error
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrBadResponse):
		return false
	case errors.As(err, &se):
		return se.code >= 500
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne):
		return true
	}
	// Connection resets and refusals surface as *url.Error wrapping
	// *net.OpError (a net.Error); anything else from the transport is
	// treated the same way, since the request never got an answer.
	return true
}

// statusError is an upstream's 5xx answer.
type statusError struct{ code int }

func (e *statusError) Error() string { return fmt.Sprintf("upstream answered %d", e.code) }

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// jitter spreads d over [d/2, 3d/2).
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d)
}

// retryBudget lets retries add at most ratio of the calls, plus
// minPerSecond so that a quiet service can still retry, in the manner of
// Finagle's RetryBudget and Envoy's retry budgets. Calls deposit ratio of a
// token, each retry withdraws one.
type retryBudget struct {
	ratio, minPerSecond, max float64

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func newRetryBudget(ratio, minPerSecond float64) *retryBudget {
	return &retryBudget{ratio: ratio, minPerSecond: minPerSecond, max: 100, tokens: minPerSecond, last: time.Now()}
}

func (b *retryBudget) deposit() {
	b.mu.Lock()
	b.tokens = min(b.max, b.tokens+b.ratio)
	b.mu.Unlock()
}

func (b *retryBudget) withdraw() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	b.tokens = min(b.max, b.tokens+b.minPerSecond*now.Sub(b.last).Seconds())
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
