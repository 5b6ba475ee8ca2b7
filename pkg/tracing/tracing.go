package tracing

import (
	"context"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// propagator reads and writes W3C trace context (traceparent, tracestate)
// and baggage headers.
var propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// Tracing is one instance's tracing: on, with a tracer provider exporting
// to the configured endpoint, or off. Its methods are safe on a Tracing
// that is off, where they do nothing.
type Tracing struct {
	tp *sdktrace.TracerProvider // nil when off
}

// Setup returns the tracing c describes, its export metrics registered with
// metrics. When c is off it only returns a Tracing that is off: no
// provider, no goroutine, no metric. When on, it also sets the process's
// text map propagator to W3C trace context and baggage, which the servers
// read incoming traceparent headers with and the gateway's calls write
// theirs with. It cannot fail: FromEnv has checked c, and the exporter
// connects only when it sends its first batch.
func Setup(c Config, metrics prometheus.Registerer) *Tracing {
	if !c.Enabled() {
		return &Tracing{}
	}
	exp := newExporter(c)
	otel.SetTextMapPropagator(propagator)
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithResource(newResource(c)),
		sdktrace.WithSampler(c.Sampler),
		sdktrace.WithSpanProcessor(newQueue(exp, c, metrics)),
	)
	return &Tracing{tp: tp}
}

// newResource describes the instance: OTEL_RESOURCE_ATTRIBUTES first, so
// that the service's name and the instance's ID, which the logs and Consul
// carry too, are always what movieapp says they are.
func newResource(c Config) *resource.Resource {
	attrs := append([]attribute.KeyValue{}, c.Attributes...)
	attrs = append(attrs, semconv.ServiceName(c.ServiceName), semconv.ServiceInstanceID(c.InstanceID),
		semconv.TelemetrySDKName("opentelemetry"), semconv.TelemetrySDKLanguageGo, semconv.TelemetrySDKVersion(otel.Version()))
	if c.Version != "" {
		attrs = append(attrs, semconv.ServiceVersion(c.Version))
	}
	// NewSchemaless with duplicate keys keeps the last: the ones above.
	return resource.NewSchemaless(attrs...)
}

// Enabled reports whether t traces.
func (t *Tracing) Enabled() bool { return t != nil && t.tp != nil }

// TracerProvider returns the provider to make spans with, nil when t is
// off: a caller given nil makes no span at all, which costs less than the
// no-op provider's spans.
func (t *Tracing) TracerProvider() trace.TracerProvider {
	if !t.Enabled() {
		return nil
	}
	return t.tp
}

// Handler returns next with a server span around every request that traced
// accepts, named after the route that served it ("GET /movie"), as the child
// of the caller's span when the request carries a traceparent. Off, it
// returns next itself.
//
// The request it passes on is a copy (it carries the span), so whatever
// reads the matched route pattern from the request, as the mux writes it
// there, must sit inside it.
func (t *Tracing) Handler(next http.Handler, traced func(*http.Request) bool) http.Handler {
	if !t.Enabled() {
		return next
	}
	return otelhttp.NewHandler(next, "", otelhttp.WithTracerProvider(t.tp),
		otelhttp.WithPropagators(propagator), otelhttp.WithFilter(otelhttp.Filter(traced)))
}

// Shutdown exports the spans still queued and stops exporting, within ctx
// (see queue.Shutdown). Call it once the server has stopped serving.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if !t.Enabled() {
		return nil
	}
	return t.tp.Shutdown(ctx)
}
