package gateway

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"movieexample.com/internal/metricstest"
	"movieexample.com/metadata"
	metadatahttp "movieexample.com/metadata/httpapi"
	"movieexample.com/pkg/identity"
	"movieexample.com/pkg/requestid"
	"movieexample.com/pkg/web"
)

// backend is an httptest server standing in for one metadata instance.
type backend struct {
	*httptest.Server
	hits atomic.Int64
}

func newBackend(t *testing.T, h http.HandlerFunc) *backend {
	t.Helper()
	b := &backend{}
	b.Server = httptest.NewServer(speaking(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		h(w, r)
	})))
	t.Cleanup(b.Close)
	return b
}

func (b *backend) addr() string { return strings.TrimPrefix(b.URL, "http://") }

func okMetadata(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, `{"id":"`+r.URL.Query().Get("id")+`","title":"Ikiru","description":"","director":"Akira Kurosawa"}`)
}

func status(code int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(code) }
}

// deadAddr returns an address where nothing listens: connection refused.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// testIdentity is the identity of the test instance at addr: what discovery
// names it in these tests, and what it says it is.
func testIdentity(addr string) string { return identity.Of("test", addr) }

// speaking answers with the identity of the instance at the address the
// request was sent to, as a movieapp instance there would.
func speaking(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(identity.Header, testIdentity(r.Host))
		h.ServeHTTP(w, r)
	})
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newUpstream returns an Upstream called name whose endpoints come from
// factory, watching the fixed instances at addrs (each named by its
// testIdentity), and stopped at the end of the test.
func newUpstream(t *testing.T, name string, factory sd.Factory, cfg Config, addrs ...string) *Upstream {
	t.Helper()
	return newUpstreamIn(t, prometheus.NewRegistry(), name, factory, cfg, addrs...)
}

// newUpstreamIn is newUpstream with its metrics registered in reg.
func newUpstreamIn(t *testing.T, reg *prometheus.Registry, name string, factory sd.Factory, cfg Config, addrs ...string) *Upstream {
	t.Helper()
	u := New(name, factory, cfg, NewMetrics(reg), quietLogger())
	instances := make(fixedInstancer, len(addrs))
	for i, addr := range addrs {
		instances[i] = identity.Instance(testIdentity(addr), addr)
	}
	u.Watch(instances)
	t.Cleanup(u.Stop)
	waitEndpoints(t, u, len(addrs))
	return u
}

// waitEndpoints waits until u has n endpoints: the upstream takes the
// instancer's first event on a goroutine of its own.
func waitEndpoints(t *testing.T, u *Upstream, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := 0
		if set := u.set.Load(); set != nil {
			got = len(set.all)
		}
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d %s endpoints after 5s, want %d", got, u.name, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// newMetadata returns the client of a metadata Upstream (the one movie
// builds, over the metadata service's own HTTP client) whose instances are
// addrs, and the Upstream.
func newMetadata(t *testing.T, cfg Config, addrs ...string) (*metadatahttp.Client, *Upstream) {
	t.Helper()
	u := newUpstream(t, "metadata", metadatahttp.NewFactory(web.NewTransport()), cfg, addrs...)
	return metadatahttp.NewClient(u.Endpoint()), u
}

// fixedInstancer publishes a fixed set of instances. Unlike sd.FixedInstancer
// it gives every subscriber its own copy of the slice, as go-kit's Consul
// instancer does.
type fixedInstancer []string

func (f fixedInstancer) Register(ch chan<- sd.Event) { ch <- sd.Event{Instances: slices.Clone(f)} }
func (f fixedInstancer) Deregister(chan<- sd.Event)  {}
func (f fixedInstancer) Stop()                       {}

func TestSpreadsCallsOverInstances(t *testing.T) {
	a, b := newBackend(t, okMetadata), newBackend(t, okMetadata)
	c, _ := newMetadata(t, DefaultConfig(), a.addr(), b.addr())
	for range 100 {
		if _, err := c.Get(context.Background(), "1"); err != nil {
			t.Fatal(err)
		}
	}
	if a.hits.Load() == 0 || b.hits.Load() == 0 {
		t.Errorf("hits = %d and %d over 100 calls: want both instances used", a.hits.Load(), b.hits.Load())
	}
}

func TestRetriesFailedAttemptsOnAnotherInstance(t *testing.T) {
	tests := []struct {
		name string
		sick func(t *testing.T) string // the failing instance's address
	}{
		{"connection refused", deadAddr},
		{"5xx", func(t *testing.T) string { return newBackend(t, status(503)).addr() }},
		{"attempt timeout", func(t *testing.T) string {
			return newBackend(t, func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
				}
			}).addr()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			healthy := newBackend(t, okMetadata)
			cfg := DefaultConfig()
			cfg.AttemptTimeout = 100 * time.Millisecond
			cfg.BreakerFailures = 0 // every call must go through the retry path
			cfg.RetryRatio = 1      // and the budget, tested on its own, must not cut it short
			c, _ := newMetadata(t, cfg, tt.sick(t), healthy.addr())
			for i := range 20 {
				if _, err := c.Get(context.Background(), "1"); err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
			}
		})
	}
}

func TestAnswersAreNotRetried(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    error
	}{
		{"404", status(404), metadata.ErrNotFound},
		{"400", status(400), web.ErrBadResponse},
		{"malformed body", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"id":`) }, web.ErrBadResponse},
		{"body without title", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"id":"1"}`) }, web.ErrBadResponse},
		{"oversized body", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"id":"1","title":"`+strings.Repeat("x", 1<<20)+`"}`)
		}, web.ErrBadResponse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackend(t, tt.handler)
			c, _ := newMetadata(t, DefaultConfig(), b.addr())
			_, err := c.Get(context.Background(), "1")
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
			if got := b.hits.Load(); got != 1 {
				t.Errorf("instance hit %d times, want 1 (an answer is not retried)", got)
			}
		})
	}
}

func TestNoInstanceFailsFast(t *testing.T) {
	c, u := newMetadata(t, DefaultConfig())
	if _, err := c.Get(context.Background(), "1"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("err = %v, want ErrUnavailable", err)
	}
	if err := u.Ready(); err == nil {
		t.Error("Ready() = nil with no instance discovered")
	}
}

// TestCallBeforeWatchIsUnavailable: a service serves before it registers,
// and movie watches its upstreams only once registered, so calls may come
// before Watch.
func TestCallBeforeWatchIsUnavailable(t *testing.T) {
	u := New("metadata", metadatahttp.NewFactory(web.NewTransport()), DefaultConfig(), NewMetrics(prometheus.NewRegistry()), quietLogger())
	defer u.Stop()
	if _, err := metadatahttp.NewClient(u.Endpoint()).Get(context.Background(), "1"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("err = %v, want ErrUnavailable", err)
	}
	if err := u.Ready(); err == nil {
		t.Error("Ready() = nil before Watch")
	}
}

func TestEveryInstanceFailingIsUnavailable(t *testing.T) {
	c, _ := newMetadata(t, DefaultConfig(), deadAddr(t), deadAddr(t))
	_, err := c.Get(context.Background(), "1")
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("err = %v, want ErrUnavailable", err)
	}
}

func TestCallerDeadlineIsUnavailableNotBareDeadline(t *testing.T) {
	slow := newBackend(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	c, _ := newMetadata(t, DefaultConfig(), slow.addr())
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Get(ctx, "1")
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want ErrUnavailable wrapping context.DeadlineExceeded", err)
	}
}

func TestBreakerEjectsFailingInstance(t *testing.T) {
	sick := newBackend(t, status(500))
	healthy := newBackend(t, okMetadata)
	cfg := DefaultConfig()
	cfg.BreakerFailures = 3
	cfg.BreakerCooldown = time.Hour // no trial call during the test
	c, _ := newMetadata(t, cfg, sick.addr(), healthy.addr())
	for i := range 200 {
		if _, err := c.Get(context.Background(), "1"); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if got := sick.hits.Load(); got != 3 {
		t.Errorf("failing instance hit %d times over 200 calls, want 3 (then ejected)", got)
	}
}

func TestRetryBudgetBoundsRetries(t *testing.T) {
	sick := newBackend(t, status(500))
	cfg := DefaultConfig()
	cfg.BreakerFailures = 0
	cfg.Backoff = 0
	cfg.MinRetriesPerSecond = 0
	c, _ := newMetadata(t, cfg, sick.addr())
	const calls = 200
	for range calls {
		c.Get(context.Background(), "1")
	}
	retries := sick.hits.Load() - calls
	// 20% of calls plus the initial reserve (MinRetriesPerSecond, 0 here).
	if max := int64(calls*cfg.RetryRatio) + 1; retries > max {
		t.Errorf("%d retries over %d calls, want at most %d", retries, calls, max)
	}
	if retries == 0 {
		t.Error("no retry at all: the budget should allow some")
	}
}

func TestForwardsRequestID(t *testing.T) {
	var got atomic.Value
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.Header.Get(requestid.Header))
		okMetadata(w, r)
	})
	c, _ := newMetadata(t, DefaultConfig(), b.addr())
	if _, err := c.Get(requestid.NewContext(context.Background(), "req-42"), "1"); err != nil {
		t.Fatal(err)
	}
	if got.Load() != "req-42" {
		t.Errorf("upstream saw request ID %q, want req-42", got.Load())
	}
}

func TestRedirectIsNotFollowed(t *testing.T) {
	target := newBackend(t, okMetadata)
	redirecting := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+r.URL.RequestURI(), http.StatusFound)
	})
	c, _ := newMetadata(t, DefaultConfig(), redirecting.addr())
	_, err := c.Get(context.Background(), "1")
	if !errors.Is(err, web.ErrBadResponse) {
		t.Errorf("err = %v, want web.ErrBadResponse for a 302", err)
	}
	if got := target.hits.Load(); got != 0 {
		t.Errorf("redirect target hit %d times, want 0: an upstream call follows no redirect", got)
	}
}

func TestCallerCancelDoesNotEjectInstance(t *testing.T) {
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("id") == "slow" {
			<-r.Context().Done()
			return
		}
		okMetadata(w, r)
	})
	cfg := DefaultConfig()
	cfg.BreakerFailures = 2
	cfg.BreakerCooldown = time.Hour
	c, u := newMetadata(t, cfg, b.addr())
	for range 5 {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(10*time.Millisecond, cancel)
		if _, err := c.Get(ctx, "slow"); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want one wrapping context.Canceled", err)
		}
	}
	if _, err := c.Get(context.Background(), "1"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.ToFloat64(u.m.ejections); n != 0 {
		t.Errorf("%v ejections after calls its caller abandoned, want 0: they say nothing about the instance", n)
	}
}

// TestWrongInstanceIsAFailedAttempt: an answer from another process than
// the instance discovery named (here a server that says it is someone else,
// and answers 404 to everything, as another service on a reused port would)
// is never "not found": it is retried on another instance, counted under
// its own outcome, logged once for that instance however often it happens,
// and trips that instance's breaker like any failure.
func TestWrongInstanceIsAFailedAttempt(t *testing.T) {
	var hits atomic.Int64
	impostor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set(identity.Header, "someone/else")
		http.Error(w, `{"error":"no route"}`, http.StatusNotFound)
	}))
	t.Cleanup(impostor.Close)
	healthy := newBackend(t, okMetadata)
	var logs strings.Builder
	logger := slog.New(slog.NewJSONHandler(&lockedWriter{w: &logs}, nil))
	reg := prometheus.NewRegistry()
	cfg := DefaultConfig()
	cfg.BreakerCooldown = time.Hour // no trial call during the test
	u := New("metadata", metadatahttp.NewFactory(web.NewTransport()), cfg, NewMetrics(reg), logger)
	impostorAddr := strings.TrimPrefix(impostor.URL, "http://")
	named := identity.Of("metadata", "metadata-1")
	u.Watch(fixedInstancer{identity.Instance(named, impostorAddr), identity.Instance(testIdentity(healthy.addr()), healthy.addr())})
	t.Cleanup(u.Stop)
	deadline := time.Now().Add(10 * time.Second)
	for u.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("upstream not ready within 10s: %v", u.Ready())
		}
		time.Sleep(time.Millisecond)
	}
	c := metadatahttp.NewClient(u.Endpoint())
	for i := range 100 {
		if _, err := c.Get(context.Background(), "1"); err != nil {
			t.Fatalf("call %d: %v (the healthy instance should answer every call)", i, err)
		}
	}
	if got := hits.Load(); got != int64(cfg.BreakerFailures) {
		t.Errorf("impostor hit %d times over 100 calls, want %d (then ejected)", got, cfg.BreakerFailures)
	}
	wrong, _ := metricstest.Gather(t, reg).Value("movieapp_gateway_upstream_requests_total",
		map[string]string{"target": "metadata", "outcome": "wrong_instance"})
	if wrong != float64(hits.Load()) {
		t.Errorf("upstream_requests_total{wrong_instance} = %v, want %d: one per answer of the impostor", wrong, hits.Load())
	}
	var lines int
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, "answer from the wrong instance") {
			lines++
			for _, want := range []string{`"want":"` + named + `"`, `"got":"someone/else"`, impostorAddr} {
				if !strings.Contains(line, want) {
					t.Errorf("log line %s lacks %s", strings.TrimSpace(line), want)
				}
			}
		}
	}
	if lines != 1 {
		t.Errorf("%d log lines about the wrong instance, want 1:\n%s", lines, logs.String())
	}
}

// lockedWriter serialises writes from concurrent loggers.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestInstanceWithoutIdentityIsNotReady: an instance string the factory
// refuses (a plain host:port, as go-kit's own Consul instancer gives, names
// no instance to check answers against) is left out, loudly: a warning in
// the log, and Ready says why no call can succeed.
func TestInstanceWithoutIdentityIsNotReady(t *testing.T) {
	var logs strings.Builder
	logger := slog.New(slog.NewJSONHandler(&lockedWriter{w: &logs}, nil))
	u := New("metadata", metadatahttp.NewFactory(web.NewTransport()), DefaultConfig(), NewMetrics(prometheus.NewRegistry()), logger)
	u.Watch(fixedInstancer{newBackend(t, okMetadata).addr()})
	t.Cleanup(u.Stop)
	deadline := time.Now().Add(10 * time.Second)
	for u.instances.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("instance not taken in within 10s")
		}
		time.Sleep(time.Millisecond)
	}
	if err := u.Ready(); err == nil || !strings.Contains(err.Error(), "none callable") {
		t.Errorf("Ready() = %v, want an error saying no instance is callable", err)
	}
	if !strings.Contains(logs.String(), `"level":"WARN","msg":"instance left out: no endpoint could be made for it"`) {
		t.Errorf("no warning about the refused instance in the log:\n%s", logs.String())
	}
}
