package gateway

import (
	"context"
	"errors"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"movieexample.com/pkg/errs"
	"movieexample.com/pkg/identity"
)

// Metrics are the gateway's view of its upstreams, shared by every Upstream
// of one process.
type Metrics struct {
	requests        *prometheus.CounterVec
	calls           *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	retries         *prometheus.CounterVec
	budgetExhausted *prometheus.CounterVec
	ejections       *prometheus.CounterVec
	panics          *prometheus.CounterVec
	instances       *prometheus.GaugeVec
}

// NewMetrics registers the upstream metrics with r, once per process.
func NewMetrics(r prometheus.Registerer) *Metrics {
	f := promauto.With(r)
	const ns, sub = "movieapp", "gateway"
	return &Metrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "upstream_requests_total",
			Help: "Requests sent to an upstream's instances, one per attempt (a retry is another request), by target and outcome (ok, not_found, bad_response, wrong_instance, overloaded, unavailable, canceled)."},
			[]string{"target", "outcome"}),
		calls: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "upstream_calls_total",
			Help: "Calls to an upstream service, retries included in one call, by target and outcome (ok, not_found, bad_response, overloaded, unavailable, canceled)."},
			[]string{"target", "outcome"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "upstream_call_duration_seconds",
			Help:    "Time of a call to an upstream service, retries included, by target.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}},
			[]string{"target"}),
		retries: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "upstream_retries_total",
			Help: "Attempts retried on another instance, by target."}, []string{"target"}),
		budgetExhausted: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "upstream_retry_budget_exhausted_total",
			Help: "Retries not made because the retry budget was spent, by target."}, []string{"target"}),
		ejections: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "upstream_ejections_total",
			Help: "Times an instance's circuit breaker opened, by target."}, []string{"target"}),
		panics: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "upstream_panic_total",
			Help: "Calls that found every instance ejected and tried them anyway, breakers bypassed, by target."}, []string{"target"}),
		instances: f.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "upstream_instances",
			Help: "Instances currently discovered, by target."}, []string{"target"}),
	}
}

// upstreamMetrics are one target's metrics with their labels resolved once,
// so the request path does no label lookup.
type upstreamMetrics struct {
	req                                 outcomes // per attempt
	call                                outcomes // per call
	duration                            prometheus.Observer
	retries, budgetExhausted, ejections prometheus.Counter
	panics                              prometheus.Counter
	instances                           prometheus.Gauge
}

// outcomes are one target's counters of one vector, by outcome. A call
// has no wrong_instance outcome of its own: a call whose attempts found
// only wrong instances is unavailable. Overloaded is an attempt that an
// instance shed (errs.ErrOverloaded), or a call whose last attempt was.
type outcomes struct {
	ok, notFound, badResponse, wrongInstance, overloaded, unavailable, canceled prometheus.Counter
}

func newOutcomes(v *prometheus.CounterVec, t string, perAttempt bool) outcomes {
	o := outcomes{
		ok:          v.WithLabelValues(t, "ok"),
		notFound:    v.WithLabelValues(t, "not_found"),
		badResponse: v.WithLabelValues(t, "bad_response"),
		overloaded:  v.WithLabelValues(t, "overloaded"),
		unavailable: v.WithLabelValues(t, "unavailable"),
		canceled:    v.WithLabelValues(t, "canceled"),
	}
	o.wrongInstance = o.unavailable
	if perAttempt {
		o.wrongInstance = v.WithLabelValues(t, "wrong_instance")
	}
	return o
}

func (m *Metrics) forTarget(t string) upstreamMetrics {
	return upstreamMetrics{
		req:             newOutcomes(m.requests, t, true),
		call:            newOutcomes(m.calls, t, false),
		duration:        m.duration.WithLabelValues(t),
		retries:         m.retries.WithLabelValues(t),
		budgetExhausted: m.budgetExhausted.WithLabelValues(t),
		ejections:       m.ejections.WithLabelValues(t),
		panics:          m.panics.WithLabelValues(t),
		instances:       m.instances.WithLabelValues(t),
	}
}

// instrumenting is the endpoint middleware that counts and times every call
// of an upstream's endpoint, by outcome.
func instrumenting(m upstreamMetrics) endpoint.Middleware {
	return func(next endpoint.Endpoint) endpoint.Endpoint {
		return func(ctx context.Context, req any) (any, error) {
			start := time.Now()
			resp, err := next(ctx, req)
			m.duration.Observe(time.Since(start).Seconds())
			m.call.count(err)
			return resp, err
		}
	}
}

// outcome is what became of an attempt or a call.
type outcome int

const (
	outcomeOK outcome = iota
	outcomeNotFound
	outcomeBadResponse
	outcomeWrongInstance
	outcomeOverloaded
	outcomeUnavailable
	outcomeCanceled
)

// String is the outcome's label value.
func (o outcome) String() string {
	return [...]string{"ok", "not_found", "bad_response", "wrong_instance", "overloaded", "unavailable", "canceled"}[o]
}

// outcomeOf classifies err. A canceled attempt is one abandoned by the
// caller (its client went away, or another call of the same request
// failed): it says nothing about the instance.
func outcomeOf(err error) outcome {
	switch {
	case err == nil:
		return outcomeOK
	case errors.Is(err, identity.ErrWrongInstance):
		return outcomeWrongInstance
	case errors.Is(err, context.Canceled):
		return outcomeCanceled
	case errors.Is(err, errs.ErrOverloaded):
		return outcomeOverloaded
	}
	switch errs.KindOf(err) {
	case errs.NotFound:
		return outcomeNotFound
	case errs.BadGateway:
		return outcomeBadResponse
	}
	return outcomeUnavailable
}

// count counts one outcome of err.
func (o outcomes) count(err error) {
	switch outcomeOf(err) {
	case outcomeOK:
		o.ok.Inc()
	case outcomeNotFound:
		o.notFound.Inc()
	case outcomeBadResponse:
		o.badResponse.Inc()
	case outcomeWrongInstance:
		o.wrongInstance.Inc()
	case outcomeOverloaded:
		o.overloaded.Inc()
	case outcomeCanceled:
		o.canceled.Inc()
	default:
		o.unavailable.Inc()
	}
}
