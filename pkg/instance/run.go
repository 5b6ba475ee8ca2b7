// Package instance runs one movieapp service instance from start to stop:
// it binds the listener, serves the service's routes with the operational
// ones (pkg/ops) behind the middleware every request goes through, registers
// the instance in Consul, and on SIGTERM deregisters, drains and shuts down,
// in the order that loses no request. Config holds the settings every
// instance shares.
package instance

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"movieexample.com/pkg/discovery"
	"movieexample.com/pkg/httpmetrics"
	"movieexample.com/pkg/identity"
	"movieexample.com/pkg/ops"
	"movieexample.com/pkg/requestid"
	"movieexample.com/pkg/tracing"
	"movieexample.com/pkg/web"
)

// Server timeouts. A slow client holds a connection for at most these; the
// write timeout leaves room for the gateway's own upstream deadline.
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 10 * time.Second
	WriteTimeout      = 15 * time.Second
	IdleTimeout       = 60 * time.Second
	MaxHeaderBytes    = 16 << 10
	// TraceFlushTimeout bounds the export of the spans still queued at
	// shutdown: a batch takes milliseconds to a collector that answers, and
	// one that does not must not push the stop past Docker's 10s grace.
	TraceFlushTimeout = 2 * time.Second
)

// App is one service instance for Run to serve.
type App struct {
	Config   Config
	Logger   *slog.Logger
	Registry discovery.Registry // where the instance registers; required
	// Routes are the service's routes, on a mux from web.NewMux. Run adds
	// the operational routes to the same mux, so that a request is routed
	// once: a second mux in front would send every service path through
	// its catch-all, which costs allocations per request.
	Routes  *http.ServeMux
	Metrics *prometheus.Registry // served on /metrics; see ops.NewRegistry

	// Start, if set, runs once the instance is registered, so the registry
	// is known to answer (movie starts discovery here). An error stops Run.
	Start func(ctx context.Context) error
	// Ready, if set, says why the instance cannot serve yet beyond its own
	// registration (movie: an upstream with no discovered instance).
	Ready func() error
	// Stop, if set, runs after the HTTP server has shut down.
	Stop func()
	// Tracing, if set, makes a server span of every request to the
	// service's routes; Run shuts it down (exporting what is left) once the
	// server has, within TraceFlushTimeout, whatever Run returns.
	Tracing *tracing.Tracing
}

// Main is the whole of a service's main function: it runs run with a
// context that ends on SIGINT or SIGTERM, and exits 1 with the error if run
// fails (0 for -h).
func Main(service string, run func(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "%s: %v\n", service, err)
		os.Exit(1)
	}
}

// Run serves app until ctx ends, then shuts down in the order that loses no
// request: deregister (so gateways stop choosing this instance), keep serving
// for Config.Drain while they notice, then shut the HTTP server down within
// Config.ShutdownTimeout. It returns nil after a clean shutdown and an error
// if the instance could not start (port taken, Consul unreachable until the
// start timeout, Consul token lacking permission) or its server failed.
func Run(ctx context.Context, app App) error {
	// Deferred, so it runs on every way out, and last: after the server has
	// shut down, the last request's spans are queued. Its own deadline, not
	// what the HTTP shutdown left of one: a collector that does not answer
	// costs the stop at most this, however long the drain took.
	defer func() {
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), TraceFlushTimeout)
		defer cancel()
		if err := app.Tracing.Shutdown(tctx); err != nil {
			app.Logger.Warn("tracing shutdown: spans not exported", "err", err)
		}
	}()
	ln, inst, err := listen(app.Config)
	if err != nil {
		return err
	}
	s := &server{app: app}
	s.http = s.newHTTPServer()
	// Serve before registering: /health answers while Consul is still
	// being waited for, and /ready says why the instance is not ready.
	s.serve(ln)
	app.Logger.Info("listening", "addr", ln.Addr().String(), "advertise", inst.Addr())

	reg, err := s.register(ctx, inst)
	if err != nil || reg == nil {
		return err
	}
	var failed error
	select {
	case <-ctx.Done():
		app.Logger.Info("signal received; shutting down")
	case failed = <-s.serveErr:
		app.Logger.Error("server failed", "err", failed)
	}
	s.drainAndStop(ctx, reg, failed == nil)
	return failed
}

// listen binds the configured address and returns the instance to register
// for it.
func listen(cfg Config) (net.Listener, discovery.Instance, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)))
	if err != nil {
		return nil, discovery.Instance{}, fmt.Errorf("listen: %w", err)
	}
	host, port, err := discovery.Advertise(cfg.Host, cfg.AdvertiseAddr, ln.Addr().(*net.TCPAddr).Port)
	if err != nil {
		ln.Close()
		return nil, discovery.Instance{}, err
	}
	return ln, discovery.Instance{ID: cfg.InstanceID, Service: cfg.Service, Host: host, Port: port,
		Weight: cfg.Weight, Tags: cfg.Tags, Meta: cfg.Meta}, nil
}

// server is one Run's HTTP server and the state its readiness reads.
type server struct {
	app      App
	http     *http.Server
	serving  sync.WaitGroup
	serveErr chan error

	reg      atomic.Pointer[discovery.Registration]
	draining atomic.Bool
	conns    conns
}

// ready says why the instance cannot serve, or nil.
func (s *server) ready() error {
	switch r := s.reg.Load(); {
	case s.draining.Load():
		return errors.New("shutting down")
	case r == nil || !r.Registered():
		return errors.New("not registered in Consul")
	case s.app.Ready != nil:
		return s.app.Ready()
	}
	return nil
}

// newHTTPServer adds the operational routes to the service's and wraps them
// in the middleware every request goes through: the instance's identity
// header, the request ID, then the server span (when tracing), then the
// metrics and access log, then the in-flight limit, then panic recovery, so
// that the 500 a panic turns into is counted and logged like any other
// answer. The span is outside the metrics so that the access log line
// carries its IDs, and right outside them because it copies the request,
// which would hide the route pattern from anything outside the copy; the
// operational routes get no span. The limit is inside the
// metrics, so that a refused request counts as the 503 its client got, and
// inside the identity header, so that a gateway can tell the instance that
// refused it.
func (s *server) newHTTPServer() *http.Server {
	app := s.app
	mux := app.Routes
	ops.Routes(mux, s.ready, app.Metrics, app.Config.Pprof)
	h := web.RecoverPanics(app.Logger, mux)
	h = newLimiter(app.Config.MaxInFlight, mux, app.Metrics).handler(h)
	h = httpmetrics.New(app.Metrics).Handler(app.Config.AccessLog, app.Logger, h)
	h = app.Tracing.Handler(h, func(r *http.Request) bool { return !ops.Operational(r.URL.Path) })
	return &http.Server{
		Handler:           identity.Middleware(identity.Of(app.Config.Service, app.Config.InstanceID), requestid.Middleware(h)),
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(app.Logger.Handler(), slog.LevelWarn),
		ConnState:         s.conns.track,
	}
}

func (s *server) serve(ln net.Listener) {
	s.serveErr = make(chan error, 1)
	s.serving.Add(1)
	go func() {
		defer s.serving.Done()
		if err := s.http.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.serveErr <- err
		}
	}()
}

// register registers inst and runs app.Start. On failure it shuts the
// server down first, so no goroutine outlives Run, and returns nil if ctx
// ended meanwhile (a stop before the start finished is no error).
func (s *server) register(ctx context.Context, inst discovery.Instance) (*discovery.Registration, error) {
	cfg, logger := s.app.Config, s.app.Logger
	r, err := discovery.Register(ctx, s.app.Registry, inst, cfg.Discovery, logger, discovery.NewMetrics(s.app.Metrics))
	if err != nil {
		s.shutdown(ctx)
		if ctx.Err() != nil {
			logger.Info("stopped before registering")
			return nil, nil
		}
		if errors.Is(err, discovery.ErrPermissionDenied) {
			return nil, fmt.Errorf("the Consul token lacks permission to register %s: it needs service:write on %q "+
				"(pass the token in CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE): %w", cfg.Service, cfg.Service, err)
		}
		return nil, fmt.Errorf("register in Consul at %s: %w", cfg.ConsulAddr, err)
	}
	s.reg.Store(r)
	if s.app.Start != nil {
		if err := s.app.Start(ctx); err != nil {
			_ = r.Close(context.WithoutCancel(ctx))
			s.shutdown(ctx)
			return nil, err
		}
	}
	return r, nil
}

// drainAndStop deregisters, keeps serving for Config.Drain when drain is
// set (not after the server failed), then shuts the server down.
func (s *server) drainAndStop(ctx context.Context, reg *discovery.Registration, drain bool) {
	s.draining.Store(true)
	start := time.Now()
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	if err := reg.Close(dctx); err != nil {
		// Consul will reap the instance after its TTL and
		// DeregisterCriticalServiceAfter: log and carry on shutting down.
		s.app.Logger.Warn("deregister failed", "err", err)
	}
	cancel()
	if drain {
		time.Sleep(s.app.Config.Drain)
	}
	s.shutdown(ctx)
	s.app.Logger.Info("stopped", "shutdown_took", time.Since(start).Round(time.Millisecond).String())
}

// shutdown closes the server, waits for Serve to return, then runs
// app.Stop; every path out of Run goes through it. Requests in flight get
// until Config.ShutdownTimeout to finish; connections that sent no request
// are closed at once (see conns), so that with no request in flight the
// server closes without waiting.
func (s *server) shutdown(ctx context.Context) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.app.Config.ShutdownTimeout)
	defer cancel()
	s.conns.closeUnserved()
	inFlight := 0
	err := s.http.Shutdown(sctx)
	if err != nil {
		// Requests outlasted the deadline: count them for the log, and cut
		// them off rather than leave their connections open after Run.
		inFlight = s.conns.inFlight()
		_ = s.http.Close()
	}
	s.serving.Wait()
	if s.app.Stop != nil {
		s.app.Stop()
	}

	logger := s.app.Logger
	if n := s.conns.unservedClosed(); n > 0 {
		logger.Info("closed connections that had sent no request", "count", n)
	}
	switch {
	case inFlight > 0:
		logger.Warn("requests in flight at the shutdown deadline", "count", inFlight,
			"shutdown_timeout", s.app.Config.ShutdownTimeout.String())
	case err != nil && !errors.Is(err, context.DeadlineExceeded):
		logger.Warn("shutdown failed", "err", err)
	}
}

// conns follows the server's connections through their states
// (http.Server.ConnState) for shutdown. http.Server.Shutdown waits for a
// connection that has not sent a whole request header (StateNew) as for a
// request in flight, until it is 5s old (net/http's closeIdleConns), though
// it will never serve one: a request read once Shutdown has begun is
// dropped unanswered. So shutdown has conns close them as it calls Shutdown,
// and asks it how many requests (StateActive: from the end of a request's
// header to the last byte of its answer, which a counter around the handler
// would miss) were left at the deadline.
type conns struct {
	mu    sync.Mutex
	state map[net.Conn]http.ConnState
	// closing is set once shutdown begins: from then on a connection is
	// closed as soon as it is seen with no request, and counted in unserved.
	closing  bool
	unserved int
}

// track is the server's ConnState hook.
func (c *conns) track(conn net.Conn, st http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case st == http.StateClosed || st == http.StateHijacked:
		delete(c.state, conn)
	case st == http.StateNew && c.closing:
		// Accepted just before the listener closed.
		c.closeLocked(conn)
	default:
		if c.state == nil {
			c.state = make(map[net.Conn]http.ConnState)
		}
		c.state[conn] = st
	}
}

// closeUnserved closes every connection that has sent no request yet, and
// every one seen from now on.
func (c *conns) closeUnserved() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closing = true
	for conn, st := range c.state {
		if st == http.StateNew {
			c.closeLocked(conn)
		}
	}
}

func (c *conns) closeLocked(conn net.Conn) {
	_ = conn.Close()
	delete(c.state, conn)
	c.unserved++
}

// inFlight returns how many connections are serving a request.
func (c *conns) inFlight() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, st := range c.state {
		if st == http.StateActive {
			n++
		}
	}
	return n
}

// unservedClosed returns how many connections closeUnserved closed.
func (c *conns) unservedClosed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.unserved
}
