package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/sd"
	"github.com/sony/gobreaker"
	"go.opentelemetry.io/otel/trace"

	"movieexample.com/pkg/backoff"
	"movieexample.com/pkg/errs"
	"movieexample.com/pkg/identity"
	"movieexample.com/pkg/routing"
)

// perInstance wraps every instance's endpoint in what belongs to that one
// instance: the count of the requests sent to it, the log line of the first
// answer it gave as another instance, and (when enabled) a circuit breaker
// of its own, so an instance that keeps failing is skipped at once instead
// of costing each request a failed attempt until the registry's TTL marks
// it critical. The upstream keeps an instance's endpoint, and so its
// breaker, for as long as the instance stays discovered (see update).
func (u *Upstream) perInstance(f sd.Factory) sd.Factory {
	return func(instance string) (endpoint.Endpoint, io.Closer, error) {
		// The factory reaches and checks the instance; its weight and
		// tags are the balancer's (see update).
		bare, _ := routing.Split(instance)
		ep, closer, err := f(bare)
		if err != nil {
			return nil, nil, err
		}
		ep = u.attempts(instance)(ep)
		if u.cfg.BreakerFailures > 0 {
			ep = u.breaker(instance)(ep)
		}
		return ep, closer, nil
	}
}

// attempts is the endpoint middleware that counts every request sent to
// one instance by outcome, and logs the first answer that came from another
// instance than the one discovery named (identity.ErrWrongInstance): once
// per instance, since under address reuse every request to it would log
// the same thing until the registry drops the entry; the metric counts them
// all.
func (u *Upstream) attempts(instance string) endpoint.Middleware {
	var logged atomic.Bool
	return func(next endpoint.Endpoint) endpoint.Endpoint {
		return func(ctx context.Context, req any) (any, error) {
			resp, err := next(ctx, req)
			u.m.req.count(err)
			if err != nil && !logged.Load() {
				if me, ok := errors.AsType[*identity.MismatchError](err); ok && logged.CompareAndSwap(false, true) {
					u.log.WarnContext(ctx, "answer from the wrong instance; refused",
						"instance", instance, "want", me.Want, "got", me.Got, "addr", me.Addr)
				}
			}
			return resp, err
		}
	}
}

// breaker is the endpoint middleware of one instance's circuit breaker. An
// attempt whose context carries bypassBreaker goes through an open breaker.
func (u *Upstream) breaker(instance string) endpoint.Middleware {
	cb := gobreaker.NewCircuitBreaker(gobreaker.Settings{
		Name:        u.name + "@" + instance,
		MaxRequests: 1,
		Timeout:     u.cfg.BreakerCooldown,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= uint32(u.cfg.BreakerFailures)
		},
		IsSuccessful: func(err error) bool {
			// An answer, even "not found", is a healthy instance; a call
			// abandoned by our own caller says nothing about it. So is an
			// instance that sheds load: ejecting it for being busy would
			// push its share onto the others, which are as busy, and turn
			// an overload into an outage. An answer from the wrong instance
			// is a failure: the instance named is not there.
			return err == nil || errs.KindOf(err) == errs.NotFound || errors.Is(err, context.Canceled) ||
				errors.Is(err, errs.ErrOverloaded)
		},
		OnStateChange: func(name string, from, to gobreaker.State) {
			u.log.Warn("circuit breaker changed state", "instance", instance, "from", from.String(), "to", to.String())
			if to == gobreaker.StateOpen {
				u.m.ejections.Inc()
			}
		},
	})
	return func(next endpoint.Endpoint) endpoint.Endpoint {
		return func(ctx context.Context, req any) (any, error) {
			if u.cfg.Tracer != nil {
				// The state the attempt found, before its own outcome moves it.
				if span := trace.SpanFromContext(ctx); span.IsRecording() {
					span.SetAttributes(attrBreaker.String(cb.State().String()))
				}
			}
			resp, err := cb.Execute(func() (any, error) { return next(ctx, req) })
			if skipped(err) && ctx.Value(bypassBreaker{}) != nil {
				if u.cfg.Tracer != nil {
					if span := trace.SpanFromContext(ctx); span.IsRecording() {
						span.SetAttributes(attrBypassed.Bool(true))
					}
				}
				return next(ctx, req)
			}
			return resp, err
		}
	}
}

// bypassBreaker marks the context of an attempt made while every instance
// is ejected: the breaker lets it through (see call).
type bypassBreaker struct{}

// call sends req to an instance the balancer picks, retrying a failed
// attempt on another one (see rotation: a retry avoids the instances that
// already failed whenever there is another) within the caller's deadline, the
// per-attempt timeout and the retry budget. It does what go-kit's lb.Retry
// does not: it never retries the same instance while another is untried,
// skips open-circuited instances without spending an attempt, and wraps a
// deadline in ErrUnavailable instead of returning a bare
// context.DeadlineExceeded.
//
// An instance that answers errs.ErrOverloaded (it sheds load) is not asked
// again within the call, even when it is the only one: at its limit a moment
// ago, it most likely still is, and a second ask would only add to its load.
// Once every instance has shed, the call ends without spending more of the
// retry budget; a retry on another instance is paid for like any other, so
// that shedding cannot multiply the load by more than the budget allows.
//
// When every instance is ejected, a FailFast upstream fails at once; any
// other tries them anyway, as Envoy's panic threshold does. Every breaker
// open at once is more often one event that all of them saw (a pause of this
// process or of the whole host, a stall of the whole service shorter than a
// retry) than every instance broken, and failing fast would then turn a blip
// into a cooldown's worth of errors for a call that has no answer without
// the upstream. The retry budget still bounds what the attempts add.
func (u *Upstream) call(ctx context.Context, req any) (any, error) {
	u.budget.deposit()
	set := u.set.Load()
	if set == nil || len(set.all) == 0 {
		return nil, fmt.Errorf("%w: no %s instance discovered", ErrUnavailable, u.name)
	}
	var r rotation
	r.start(set, &u.cfg)
	var lastErr error
	for attempt := 0; ; attempt++ {
		resp, span, err := u.attempt(ctx, &r, len(set.all), attempt+1, req)
		if err == nil {
			endAttempt(span, nil, "")
			return resp, nil
		}
		lastErr = err
		if !skipped(err) && !retryable(err) {
			endAttempt(span, err, "")
			return nil, err
		}
		then := u.retry(ctx, &r, attempt+1, err)
		// Ended before the backoff: the span is the attempt, not the pause.
		endAttempt(span, err, then)
		if then != retried || backoff.Sleep(ctx, backoff.Jitter(u.cfg.Backoff<<attempt)) != nil {
			break
		}
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrUnavailable, u.name, ctx.Err())
	}
	return nil, fmt.Errorf("%w: %s: %w", ErrUnavailable, u.name, lastErr)
}

// What a call did after an attempt that failed and another instance might
// have answered: the attempt span's movieapp.retry.
const (
	retried           = "retried"
	budgetExhausted   = "budget_exhausted"   // the retry budget was spent
	attemptsExhausted = "attempts_exhausted" // that was the last of MaxAttempts
	callEnded         = "call_ended"         // the caller's deadline passed, or it went away
	everyInstanceShed = "every_instance_shed"
	everyEjected      = "every_instance_ejected" // FailFast: the call fails at once
)

// retry decides whether the call retries after its attempt number attempts
// (1 for the first) failed with err, which another instance might not have,
// and pays for the retry from the budget if so. A retry is paid for once,
// however many ejected instances it skips.
func (u *Upstream) retry(ctx context.Context, r *rotation, attempts int, err error) string {
	switch {
	case skipped(err): // every instance ejected, and failing fast
		return everyEjected
	case ctx.Err() != nil:
		return callEnded
	case attempts >= u.cfg.MaxAttempts:
		return attemptsExhausted
	case r.allShed():
		return everyInstanceShed
	case !u.budget.withdraw():
		u.m.budgetExhausted.Inc()
		return budgetExhausted
	}
	u.m.retries.Inc()
	return retried
}

// attempt makes one real attempt, number num of the call, on the next
// instance of r (of n) whose breaker lets it through, skipping ejected ones
// without spending an attempt; instances that shed the call are passed over
// (see rotation). When the skips within one round reach the instances not
// shed, every one left is ejected: a FailFast upstream returns the breaker's
// error (which skipped reports); any other starts panicking, for the rest of
// the call, under which the breaker never skips: so the loop ends. call
// never asks for an attempt once every instance has shed.
//
// When tracing, each instance tried has a client span: a skipped one's is
// ended here, the attempt's is returned for call to end once it knows what
// follows the attempt (nil when not tracing).
func (u *Upstream) attempt(ctx context.Context, r *rotation, n, num int, req any) (any, trace.Span, error) {
	for skips := 0; ; {
		m, newRound, ok := r.next()
		if !ok { // every instance shed the call: not reached, call checks
			return nil, nil, fmt.Errorf("%w: every %s instance shed the call", errs.ErrOverloaded, u.name)
		}
		if newRound {
			// Only n skips within one round, each member once, mean
			// every instance is ejected.
			skips = 0
		}
		actx, cancel := context.WithTimeout(ctx, u.cfg.AttemptTimeout)
		if r.panicking {
			actx = context.WithValue(actx, bypassBreaker{}, true)
		}
		var span trace.Span
		if u.cfg.Tracer != nil {
			actx, span = u.startAttempt(actx, m.node, num)
		}
		resp, err := m.call(actx, req, u.cfg.AttemptTimeout)
		cancel()
		if errors.Is(err, errs.ErrOverloaded) {
			r.markShed(m)
		}
		if !skipped(err) {
			return resp, span, err
		}
		if skips++; skips < n-len(r.shed) {
			endAttempt(span, err, "")
			continue
		}
		if u.cfg.FailFast || r.panicking {
			// The last skip's span, for call to end with what followed.
			return nil, span, err
		}
		endAttempt(span, err, "")
		r.panicking = true
		u.m.panics.Inc()
	}
}

// skipped reports an attempt that never reached an instance because its
// breaker is open (or half-open with its one trial call already out).
func skipped(err error) bool {
	return errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests)
}

// retryable reports whether another instance might answer where this one
// failed: when there was no answer (a connection error, a timeout: errors
// of no kind) or the answer says the instance is unavailable (a 5xx, or an
// answer from another process at its address); never for an answer of any
// other kind, such as not found or a bad response.
func retryable(err error) bool {
	switch errs.KindOf(err) {
	case errs.Internal, errs.Unavailable:
		return true
	}
	return false
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
