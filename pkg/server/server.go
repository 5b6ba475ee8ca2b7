package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"movieexample.com/pkg/discovery"
	"movieexample.com/pkg/requestid"
)

// Version is the build's version, set with
// -ldflags "-X movieexample.com/pkg/server.Version=...".
var Version = "dev"

// Server timeouts. A slow client holds a connection for at most these; the
// write timeout leaves room for the gateway's own upstream deadline.
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 10 * time.Second
	WriteTimeout      = 15 * time.Second
	IdleTimeout       = 60 * time.Second
	MaxHeaderBytes    = 16 << 10
)

// App is one service instance for Run to serve.
type App struct {
	Config Config
	Logger *slog.Logger
	// Routes are the service's routes, on a mux from NewMux. Run adds
	// /health, /ready and /metrics (and /debug/pprof/) to the same mux, so
	// that a request is routed once: a second mux in front would send every
	// service path through its catch-all, which costs allocations per request.
	Routes  *http.ServeMux
	Metrics *prometheus.Registry // served on /metrics; see NewMetricsRegistry

	// Registry is where the instance registers; nil means the Consul agent
	// at Config.ConsulAddr.
	Registry discovery.Registry

	// Start, if set, runs once the instance is registered, so the registry
	// is known to answer (movie starts discovery here). An error stops Run.
	Start func(ctx context.Context) error
	// Ready, if set, says why the instance cannot serve yet beyond its own
	// registration (movie: an upstream with no discovered instance).
	Ready func() error
	// Stop, if set, runs after the HTTP server has shut down.
	Stop func()
}

// NewMetricsRegistry returns a registry of its own (two servers in one test
// process must not collide in a global one) with the Go and process
// collectors and movieapp_build_info. No metric carries the service name:
// Prometheus adds it, with the instance ID, as target labels from Consul.
func NewMetricsRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	promauto.With(reg).NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "movieapp", Name: "build_info",
		Help: "Always 1; the labels say which build is running.",
	}, []string{"version", "goversion"}).WithLabelValues(Version, runtime.Version()).Set(1)
	return reg
}

// Run serves app until ctx ends, then shuts down in the order that loses no
// request: deregister (so gateways stop choosing this instance), keep serving
// for Config.Drain while they notice, then shut the HTTP server down within
// Config.ShutdownTimeout. It returns nil after a clean shutdown and an error
// if the instance could not start (port taken, Consul unreachable until the
// start timeout, Consul token lacking permission).
func Run(ctx context.Context, app App) error {
	cfg, logger := app.Config, app.Logger
	if cfg.HealthCheck {
		return Probe(ctx, cfg.Port)
	}
	logger.Info("starting", "config", cfg)

	registry := app.Registry
	if registry == nil {
		client, err := cfg.ConsulClient()
		if err != nil {
			return err
		}
		registry = discovery.NewConsul(client)
	}

	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	inst, err := cfg.advertise(ln.Addr().(*net.TCPAddr).Port)
	if err != nil {
		ln.Close()
		return err
	}

	var (
		reg      atomic.Pointer[discovery.Registration]
		draining atomic.Bool
	)
	ready := func() error {
		switch r := reg.Load(); {
		case draining.Load():
			return errors.New("shutting down")
		case r == nil || !r.Registered():
			return errors.New("not registered in Consul")
		case app.Ready != nil:
			return app.Ready()
		}
		return nil
	}

	srv := &http.Server{
		Handler:           handler(app, ready),
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	// Serve before registering: /health answers while Consul is still
	// being waited for, and /ready says why the instance is not ready.
	serveErr := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			serveErr <- err
		}
	}()
	logger.Info("listening", "addr", ln.Addr().String(), "advertise", inst.Addr())

	// shutdown closes the server and waits for Serve to return; every
	// path out of Run goes through it so no goroutine outlives Run.
	shutdown := func(timeout time.Duration) error {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		defer cancel()
		err := srv.Shutdown(sctx)
		wg.Wait()
		if app.Stop != nil {
			app.Stop()
		}
		return err
	}

	r, err := discovery.Register(ctx, registry, inst, cfg.Discovery, logger, discovery.NewMetrics(app.Metrics))
	if err != nil {
		_ = shutdown(cfg.ShutdownTimeout)
		if ctx.Err() != nil {
			logger.Info("stopped before registering")
			return nil
		}
		if errors.Is(err, discovery.ErrPermissionDenied) {
			return fmt.Errorf("the Consul token lacks permission to register %s: it needs service:write on %q "+
				"(pass the token in CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE): %w", cfg.Service, cfg.Service, err)
		}
		return fmt.Errorf("register in Consul at %s: %w", cfg.ConsulAddr, err)
	}
	reg.Store(r)

	if app.Start != nil {
		if err := app.Start(ctx); err != nil {
			_ = r.Close(context.WithoutCancel(ctx))
			_ = shutdown(cfg.ShutdownTimeout)
			return err
		}
	}

	var failed error
	select {
	case <-ctx.Done():
		logger.Info("signal received; shutting down")
	case failed = <-serveErr:
		logger.Error("server failed", "err", failed)
	}

	draining.Store(true)
	start := time.Now()
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	if err := r.Close(dctx); err != nil {
		// Consul will reap the instance after its TTL and
		// DeregisterCriticalServiceAfter: log and carry on shutting down.
		logger.Warn("deregister failed", "err", err)
	}
	cancel()
	if failed == nil {
		time.Sleep(cfg.Drain)
	}
	if err := shutdown(cfg.ShutdownTimeout); err != nil {
		logger.Warn("shutdown deadline passed with requests in flight", "err", err)
	}
	logger.Info("stopped", "shutdown_took", time.Since(start).Round(time.Millisecond).String())
	return failed
}

// handler adds the operational routes to the service's and wraps them in
// the middleware every request goes through.
func handler(app App, ready func() error) http.Handler {
	mux := app.Routes
	if mux == nil {
		mux = NewMux()
	}
	mux.Handle("/health", Methods{http.MethodGet: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, http.StatusOK, "ok", "")
	})})
	mux.Handle("/ready", Methods{http.MethodGet: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := ready(); err != nil {
			writeStatus(w, http.StatusServiceUnavailable, "not ready", err.Error())
			return
		}
		writeStatus(w, http.StatusOK, "ready", "")
	})})
	mux.Handle("/metrics", Methods{http.MethodGet: promhttp.HandlerFor(app.Metrics, promhttp.HandlerOpts{Registry: app.Metrics})})
	if app.Config.Pprof {
		// Sample one contended lock in 100, or /debug/pprof/mutex stays
		// empty: lock contention is one of the things a profile is for.
		runtime.SetMutexProfileFraction(100)
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	// Panics are recovered inside the instrumentation, so the 500 they turn
	// into is counted and access-logged like any other answer.
	m := newHTTPMetrics(app.Metrics)
	h := recoverPanics(app.Logger, mux)
	return requestid.Middleware(m.instrument(app.Config.AccessLog, app.Logger, h))
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
