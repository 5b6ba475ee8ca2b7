// Package ops serves what operators and orchestrators ask of every
// instance, next to its own routes: /health (the process answers), /ready
// (it can serve: registered, and for movie, upstreams discovered),
// /metrics, and optionally /debug/pprof/. Probe is the other side of /ready,
// for container healthchecks.
package ops

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"movieexample.com/pkg/web"
)

// Version is the build's version, set with
// -ldflags "-X movieexample.com/pkg/ops.Version=...".
var Version = "dev"

// NewRegistry returns a metrics registry of its own (two servers in one
// test process must not collide in a global one) with the Go and process
// collectors and movieapp_build_info. No metric carries the service name:
// Prometheus adds it, with the instance ID, as target labels from Consul.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	promauto.With(reg).NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "movieapp", Name: "build_info",
		Help: "Always 1; the labels say which build is running.",
	}, []string{"version", "goversion"}).WithLabelValues(Version, runtime.Version()).Set(1)
	return reg
}

// Routes adds the operational routes to mux: ready says why the instance
// cannot serve, or nil; metrics is served on /metrics; withPprof adds
// /debug/pprof/.
func Routes(mux *http.ServeMux, ready func() error, metrics *prometheus.Registry, withPprof bool) {
	mux.Handle("/health", web.Methods{http.MethodGet: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, http.StatusOK, "ok", "")
	})})
	mux.Handle("/ready", web.Methods{http.MethodGet: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := ready(); err != nil {
			writeStatus(w, http.StatusServiceUnavailable, "not ready", err.Error())
			return
		}
		writeStatus(w, http.StatusOK, "ready", "")
	})})
	mux.Handle("/metrics", web.Methods{http.MethodGet: promhttp.HandlerFor(metrics, promhttp.HandlerOpts{Registry: metrics})})
	if withPprof {
		// Sample one contended lock in 100, or /debug/pprof/mutex stays
		// empty: lock contention is one of the things a profile is for.
		runtime.SetMutexProfileFraction(100)
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
}

// Operational reports whether path is one of the routes Routes adds: what
// an overload limit must never refuse, since an instance that sheds its API
// is busy, not broken, and its probes and scrapes must say so.
func Operational(path string) bool {
	switch path {
	case "/health", "/ready", "/metrics":
		return true
	}
	return strings.HasPrefix(path, "/debug/pprof/")
}

type statusBody struct {
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

func writeStatus(w http.ResponseWriter, code int, status, reason string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(statusBody{Status: status, Reason: reason})
}

// Probe asks the instance on 127.0.0.1:port whether it is ready and returns
// an error if not. It is what `-healthcheck` runs, so container images need
// no shell or curl.
func Probe(ctx context.Context, port int) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	url := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) + "/ready"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	var body statusBody
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s: %s", resp.Status, body.Reason)
	}
	return nil
}
