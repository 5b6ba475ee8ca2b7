package instance

import (
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"movieexample.com/pkg/ops"
	"movieexample.com/pkg/web"
)

// DefaultMaxInFlight is -max-inflight's default, from measurements on the
// 2-CPU reference host (docs/resilience.md#overload). It bounds what an
// instance holds (requests, goroutines, upstream calls) and answers the
// excess at once; a tighter bound cuts the latency of admitted requests
// under overload (32: p99 42ms against 101ms at 128, `bin/bench -overload`)
// but sheds more and serves less (goodput 0.71 of capacity against 0.85),
// and it sheds when an upstream stalls: `make chaos`'s slow-instance
// scenario (300 req/s, one rating instance holding every answer 2s) puts
// more than 64 requests in flight at movie, waiting out 500ms attempt
// timeouts before the breaker ejects the instance, and 64 shed 29 of them;
// 128 sheds none. The limit is for more work than the instance can do,
// not for a slow upstream that the breaker is about to eject.
const DefaultMaxInFlight = 128

// limiter admits at most max requests to the service's routes at once and
// answers every one over that at once, never queued, with web.WriteOverloaded:
// a request queued behind a full instance waits for everyone ahead of it, and
// a client told to back off can go elsewhere. It is a fixed bound, not an
// adaptive one: see docs/resilience.md#overload for why.
//
// The operational routes (ops.Operational) are never counted nor refused: an
// instance that sheds is busy, not broken, and /ready must keep saying so.
type limiter struct {
	max      int64
	inFlight atomic.Int64
	// mux names the route of a refused request for the request metrics,
	// which read r.Pattern: a refused request never reaches the mux.
	mux  *http.ServeMux
	shed prometheus.Counter
}

// newLimiter registers the limiter's metrics with reg: the shed counter
// exists (at 0) whether or not max is set, so queries need no special case.
func newLimiter(max int, mux *http.ServeMux, reg prometheus.Registerer) *limiter {
	f := promauto.With(reg)
	f.NewGauge(prometheus.GaugeOpts{
		Namespace: "movieapp", Subsystem: "http", Name: "max_inflight_requests",
		Help: "Requests to the service's routes served at once before more are refused (-max-inflight); 0 is no limit.",
	}).Set(float64(max))
	return &limiter{
		max: int64(max),
		mux: mux,
		shed: f.NewCounter(prometheus.CounterOpts{
			Namespace: "movieapp", Subsystem: "http", Name: "shed_requests_total",
			Help: "Requests refused with 503 and Retry-After because -max-inflight requests were in flight.",
		}),
	}
}

// handler returns next behind the limit, or next itself with no limit.
func (l *limiter) handler(next http.Handler) http.Handler {
	if l.max <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ops.Operational(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		// Add first and undo: a load-then-add would let two requests both
		// see room for one.
		if l.inFlight.Add(1) > l.max {
			l.inFlight.Add(-1)
			l.refuse(w, r)
			return
		}
		defer l.inFlight.Add(-1)
		next.ServeHTTP(w, r)
	})
}

// refuse answers a request over the limit.
func (l *limiter) refuse(w http.ResponseWriter, r *http.Request) {
	l.shed.Inc()
	// The route the mux would have matched, for the request metrics: paid
	// only by refused requests, which never reach the mux.
	_, r.Pattern = l.mux.Handler(r)
	web.WriteOverloaded(w)
}
