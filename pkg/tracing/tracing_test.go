package tracing

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func TestFromEnv(t *testing.T) {
	tests := []struct {
		name      string
		env       map[string]string
		endpoint  string // "" means off
		sampler   string
		service   string
		wantInErr string
	}{
		{name: "nothing set is off", env: nil},
		{name: "base endpoint gets the traces path", env: map[string]string{EnvEndpoint: "http://jaeger:4318"},
			endpoint: "http://jaeger:4318/v1/traces", sampler: "parentbased_always_on", service: "movie"},
		{name: "base endpoint with a slash", env: map[string]string{EnvEndpoint: "http://jaeger:4318/"},
			endpoint: "http://jaeger:4318/v1/traces", sampler: "parentbased_always_on", service: "movie"},
		{name: "traces endpoint as it is", env: map[string]string{EnvEndpoint: "http://a:1", EnvTracesEndpoint: "http://b:2/x"},
			endpoint: "http://b:2/x", sampler: "parentbased_always_on", service: "movie"},
		{name: "sdk disabled", env: map[string]string{EnvEndpoint: "http://a:1", EnvSDKDisabled: "true"}},
		{name: "exporter none", env: map[string]string{EnvEndpoint: "http://a:1", EnvTracesExporter: "none"}},
		{name: "ratio sampler and service name", env: map[string]string{EnvEndpoint: "http://a:1",
			EnvSampler: "parentbased_traceidratio", EnvSamplerArg: "0.01", EnvServiceName: "films"},
			endpoint: "http://a:1/v1/traces", sampler: "parentbased_traceidratio:0.01", service: "films"},
		{name: "unknown sampler", env: map[string]string{EnvSampler: "sometimes"}, wantInErr: EnvSampler},
		{name: "ratio out of range", env: map[string]string{EnvSampler: "traceidratio", EnvSamplerArg: "2"}, wantInErr: EnvSamplerArg},
		{name: "grpc refused", env: map[string]string{EnvEndpoint: "http://a:1", EnvProtocol: "grpc"}, wantInErr: "http/protobuf"},
		{name: "traces protocol wins over the general one", env: map[string]string{EnvEndpoint: "http://a:1", EnvProtocol: "grpc", EnvTracesProtocol: "http/protobuf"},
			endpoint: "http://a:1/v1/traces", sampler: "parentbased_always_on", service: "movie"},
		{name: "other exporter refused", env: map[string]string{EnvTracesExporter: "zipkin"}, wantInErr: EnvTracesExporter},
		{name: "endpoint not a URL", env: map[string]string{EnvEndpoint: "jaeger:4318"}, wantInErr: EnvEndpoint},
		{name: "bad queue size", env: map[string]string{EnvQueueSize: "0"}, wantInErr: EnvQueueSize},
		{name: "bad resource attributes", env: map[string]string{EnvResourceAttrs: "novalue"}, wantInErr: EnvResourceAttrs},
		{name: "bad headers", env: map[string]string{EnvTracesHeaders: "novalue"}, wantInErr: EnvTracesHeaders},
		{name: "unknown compression", env: map[string]string{EnvCompression: "zstd"}, wantInErr: EnvCompression},
		{name: "client certificates refused", env: map[string]string{"OTEL_EXPORTER_OTLP_CERTIFICATE": "/ca.pem"}, wantInErr: "CERTIFICATE"},
		{name: "bad timeout", env: map[string]string{EnvTimeout: "soon"}, wantInErr: EnvTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := FromEnv(func(k string) string { return tt.env[k] }, "movie", "movie-1")
			if tt.wantInErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantInErr) {
					t.Fatalf("FromEnv: err = %v, want one naming %s", err, tt.wantInErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Endpoint; got != tt.endpoint {
				t.Errorf("endpoint = %q, want %q", got, tt.endpoint)
			}
			if tt.endpoint == "" {
				return
			}
			if c.SamplerName != tt.sampler || c.ServiceName != tt.service || c.InstanceID != "movie-1" {
				t.Errorf("sampler, service, instance = %q, %q, %q; want %q, %q, movie-1",
					c.SamplerName, c.ServiceName, c.InstanceID, tt.sampler, tt.service)
			}
		})
	}
}

func TestExporterSettings(t *testing.T) {
	c, err := FromEnv(func(k string) string {
		return map[string]string{EnvEndpoint: "http://a:1", EnvHeaders: "api-key=s%3Dcret,x=1", EnvTracesHeaders: "x=2",
			EnvCompression: "gzip", EnvTracesTimeout: "2500"}[k]
	}, "movie", "movie-1")
	if err != nil {
		t.Fatal(err)
	}
	if c.Headers["api-key"] != "s=cret" || c.Headers["x"] != "2" || !c.Gzip || c.Timeout != 2500*time.Millisecond {
		t.Errorf("headers %v, gzip %v, timeout %s; want api-key=s=cret and x=2 (the traces one), gzip, 2.5s", c.Headers, c.Gzip, c.Timeout)
	}
}

func TestResourceKeepsTheInstanceID(t *testing.T) {
	c, err := FromEnv(func(k string) string {
		return map[string]string{EnvResourceAttrs: "deployment.environment.name=prod%20eu,service.instance.id=other"}[k]
	}, "movie", "movie-1")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kv := range newResource(c).Attributes() {
		got[string(kv.Key)] = kv.Value.String()
	}
	for k, want := range map[string]string{"service.name": "movie", "service.instance.id": "movie-1",
		"deployment.environment.name": "prod eu"} {
		if got[k] != want {
			t.Errorf("resource %s = %q, want %q", k, got[k], want)
		}
	}
}

func TestOffCostsNothing(t *testing.T) {
	tr := Setup(Config{}, prometheus.NewRegistry())
	h := http.NewServeMux()
	if tr.Enabled() || tr.TracerProvider() != nil {
		t.Error("tracing with no endpoint is on")
	}
	if got, ok := tr.Handler(h, func(*http.Request) bool { return true }).(*http.ServeMux); !ok || got != h {
		t.Error("Handler wrapped the handler with tracing off")
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
}

// blockingExporter holds every export until released, as a collector that
// does not answer does, and records what it was given.
type blockingExporter struct {
	release chan struct{}
	mu      sync.Mutex
	got     int
	fail    bool
}

func (e *blockingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	select {
	case <-e.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fail {
		return errors.New("collector refused")
	}
	e.got += len(spans)
	return nil
}

func (e *blockingExporter) Shutdown(context.Context) error { return nil }

func TestQueueDropsAndCountsWhenTheCollectorIsStuck(t *testing.T) {
	exp := &blockingExporter{release: make(chan struct{})}
	reg := prometheus.NewRegistry()
	q := newQueue(exp, Config{QueueSize: 4, BatchSize: 2, BatchDelay: time.Hour, ExportTimeout: time.Hour}, reg)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(q))
	tracer := tp.Tracer("test")
	// The first batch of 2 is taken by the stuck export; 4 more fill the
	// queue; every span after that must be dropped at once, never waited for.
	const n = 50
	for range n {
		_, span := tracer.Start(context.Background(), "op")
		span.End()
	}
	dropped := testutil.ToFloat64(q.m.queueFull)
	if dropped < n-2-4-1 { // the queue goroutine may hold one more span in its batch
		t.Errorf("dropped %v spans of %d with a queue of 4; want at least %d", dropped, n, n-7)
	}
	if l := len(q.spans); l > 4 {
		t.Errorf("queue holds %d spans, over its bound of 4", l)
	}
	close(exp.release)
	if err := tp.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	exported := testutil.ToFloat64(q.m.exported)
	if exported+dropped != n || float64(exp.got) != exported {
		t.Errorf("exported %v (exporter got %d) + dropped %v, want %d in all", exported, exp.got, dropped, n)
	}
}

func TestQueueCountsFailedExports(t *testing.T) {
	exp := &blockingExporter{release: make(chan struct{}), fail: true}
	close(exp.release)
	q := newQueue(exp, Config{QueueSize: 16, BatchSize: 4, BatchDelay: time.Hour, ExportTimeout: time.Hour}, prometheus.NewRegistry())
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(q))
	for range 6 {
		_, span := tp.Tracer("test").Start(context.Background(), "op")
		span.End()
	}
	if err := tp.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(q.m.exportFailed); got != 6 {
		t.Errorf("export_failed = %v, want 6", got)
	}
	_ = tp.Shutdown(context.Background())
}

func TestShutdownGivesUpOnAStuckCollector(t *testing.T) {
	exp := &blockingExporter{release: make(chan struct{})} // never released
	q := newQueue(exp, Config{QueueSize: 16, BatchSize: 1, BatchDelay: time.Hour, ExportTimeout: time.Hour}, prometheus.NewRegistry())
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(q))
	_, span := tp.Tracer("test").Start(context.Background(), "op")
	span.End()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := tp.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want the deadline's error", err)
	}
	select {
	case <-q.done:
	default:
		t.Error("the queue's goroutine outlived Shutdown")
	}
}

func TestHandlerNamesTheSpanByRouteAndSkipsFiltered(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tr := &Tracing{tp: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))}
	mux := http.NewServeMux()
	var inner trace.SpanContext
	mux.HandleFunc("/movie", func(w http.ResponseWriter, r *http.Request) {
		inner = trace.SpanContextFromContext(r.Context())
	})
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {})
	h := tr.Handler(mux, func(r *http.Request) bool { return r.URL.Path != "/health" })

	req := httptest.NewRequest(http.MethodGet, "/movie?id=1", nil)
	req.Header.Set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	h.ServeHTTP(httptest.NewRecorder(), req)
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/health", nil))

	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1 (none for the filtered /health)", len(spans))
	}
	s := spans[0]
	if s.Name() != "GET /movie" || s.SpanKind() != trace.SpanKindServer {
		t.Errorf("span %q of kind %v, want a server span GET /movie", s.Name(), s.SpanKind())
	}
	if got := s.Parent().TraceID().String(); got != "0af7651916cd43dd8448eb211c80319c" || !s.Parent().IsRemote() {
		t.Errorf("parent trace %s (remote %v), want the traceparent's", got, s.Parent().IsRemote())
	}
	if inner.SpanID() != s.SpanContext().SpanID() {
		t.Error("the handler did not run in the server span's context")
	}
}
