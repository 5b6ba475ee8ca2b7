// Package httpmetrics counts and times the HTTP requests a service serves,
// by route pattern, method and status, and writes the access log. The
// metrics carry no service or instance label: which service and instance
// answered are target labels, which Prometheus adds from Consul
// (prometheus/prometheus.yml), as the Prometheus guidelines ask; a service
// label of our own would collide with them and come out renamed
// exported_service.
package httpmetrics

import (
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// statusWriter remembers the status code a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// route returns the path of the mux pattern that served r, never the raw
// path: label values stay bounded whatever paths clients send. A pattern's
// method ("GET /health") is dropped, since the method has a label of its own.
func route(r *http.Request) string {
	p := r.Pattern
	if i := strings.IndexByte(p, ' '); i >= 0 {
		p = strings.TrimLeft(p[i:], " \t")
	}
	if p == "" || p == "/" {
		return "unmatched"
	}
	return p
}

// Metrics are the request metrics every service exports.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// resolved holds the counter and histogram of each label combination
	// seen so far (routeKey -> routeMetrics), so that a request costs one
	// map lookup instead of hashing its label values in both vectors. The
	// labels are bounded (route, methodLabel), so the map is too.
	resolved sync.Map
}

type routeKey struct {
	route, method string
	code          int
}

type routeMetrics struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

func (m *Metrics) forRoute(k routeKey) routeMetrics {
	if rm, ok := m.resolved.Load(k); ok {
		return rm.(routeMetrics)
	}
	rm := routeMetrics{
		requests: m.requests.WithLabelValues(k.route, k.method, strconv.Itoa(k.code)),
		duration: m.duration.WithLabelValues(k.route, k.method),
	}
	m.resolved.Store(k, rm)
	return rm
}

// New registers the request metrics with r.
func New(r prometheus.Registerer) *Metrics {
	f := promauto.With(r)
	return &Metrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "movieapp", Subsystem: "http", Name: "requests_total",
			Help: "HTTP requests served, by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "movieapp", Subsystem: "http", Name: "request_duration_seconds",
			Help:    "Time to serve HTTP requests, by route pattern and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route", "method"}),
	}
}

// Handler counts and times every request next serves, and logs it when
// accessLog is set. Nothing between it and the ServeMux may copy the request (as
// r.WithContext does): the mux records the matched pattern on the
// *http.Request it is given, and a copy would hide it.
func (m *Metrics) Handler(accessLog bool, logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		elapsed := time.Since(start)
		rt := route(r)
		rm := m.forRoute(routeKey{route: rt, method: methodLabel(r.Method), code: sw.status})
		rm.requests.Inc()
		rm.duration.Observe(elapsed.Seconds())
		if accessLog {
			logger.InfoContext(r.Context(), "request", "method", r.Method, "route", rt, "path", r.URL.Path,
				"status", sw.status, "duration_ms", float64(elapsed.Microseconds())/1000, "remote", r.RemoteAddr)
		}
	})
}

// methodLabel keeps the method label bounded: a client can send any token
// as a method.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}
