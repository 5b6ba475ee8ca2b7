package gateway

import (
	"context"
	"net/http"
	"sync"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	metadatahttp "movieexample.com/metadata/httpapi"
	"movieexample.com/pkg/web"
)

// tracedConfig returns cfg making its spans into a recorder.
func tracedConfig(t *testing.T, cfg Config) (Config, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	cfg.Tracer = tp.Tracer("test")
	return cfg, rec
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

// withTraceContext sets the process's propagator for the test, as
// tracing.Setup does in the binaries.
func withTraceContext(t *testing.T) {
	old := otel.GetTextMapPropagator()
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTextMapPropagator(old) })
}

func TestAttemptSpans(t *testing.T) {
	withTraceContext(t)
	var mu sync.Mutex
	parents := map[string]bool{} // the span IDs the healthy instance's traceparents named
	healthy := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(r.Context(), propagation.HeaderCarrier(r.Header)))
		mu.Lock()
		parents[sc.SpanID().String()] = true
		mu.Unlock()
		okMetadata(w, r)
	})
	dead := deadAddr(t)
	cfg := DefaultConfig()
	cfg.BreakerFailures = 0 // every call may pick the dead instance first
	cfg.RetryRatio = 1
	cfg, rec := tracedConfig(t, cfg)
	u := newUpstream(t, "metadata", metadatahttp.NewFactory(web.NewTransport()), cfg, dead, healthy.addr())

	tracer := cfg.Tracer
	// Calls until one tried the dead instance first: the pick is random.
	for i := 0; i < 200; i++ {
		ctx, parent := tracer.Start(context.Background(), "caller")
		if _, err := metadatahttp.NewClient(u.Endpoint()).Get(ctx, "1"); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		parent.End()
		var attempts []sdktrace.ReadOnlySpan
		for _, s := range rec.Ended() {
			if s.Parent().SpanID() == parent.SpanContext().SpanID() {
				attempts = append(attempts, s)
			}
		}
		if len(attempts) == 1 {
			continue
		}
		if len(attempts) != 2 {
			t.Fatalf("%d attempt spans for one call, want 1 or 2", len(attempts))
		}
		failed, answered := attrs(attempts[0]), attrs(attempts[1])
		for _, c := range []struct {
			name      string
			got, want any
		}{
			{"span name", attempts[0].Name(), "metadata attempt"},
			{"kind", attempts[0].SpanKind(), trace.SpanKindClient},
			{"first attempt", failed[attrAttempt].AsInt64(), int64(1)},
			{"first instance", failed[attrInstance].AsString(), dead},
			{"first outcome", failed[attrOutcome].AsString(), "unavailable"},
			{"first retry", failed[attrRetry].AsString(), "retried"},
			{"first status", attempts[0].Status().Code, codes.Error},
			{"second attempt", answered[attrAttempt].AsInt64(), int64(2)},
			{"second instance", answered[attrInstance].AsString(), healthy.addr()},
			{"second outcome", answered[attrOutcome].AsString(), "ok"},
			{"second status", attempts[1].Status().Code, codes.Unset},
			{"service", answered[attrService].AsString(), "metadata"},
			{"status code", answered["http.response.status_code"].AsInt64(), int64(200)},
		} {
			if c.got != c.want {
				t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
			}
		}
		if _, ok := answered[attrRetry]; ok {
			t.Error("the answered attempt has a retry decision")
		}
		mu.Lock()
		defer mu.Unlock()
		if !parents[attempts[1].SpanContext().SpanID().String()] {
			t.Error("the instance's traceparent did not name the attempt's span")
		}
		return
	}
	t.Fatal("200 calls and none tried the dead instance first")
}

func TestAttemptSpanSaysWhyNoRetry(t *testing.T) {
	t.Run("budget exhausted", func(t *testing.T) {
		sick := newBackend(t, status(500))
		cfg := DefaultConfig()
		cfg.MinRetriesPerSecond, cfg.RetryRatio = 0, 0 // no retry is ever paid for
		cfg, rec := tracedConfig(t, cfg)
		u := newUpstream(t, "metadata", metadatahttp.NewFactory(web.NewTransport()), cfg, sick.addr(), deadAddr(t))
		metadatahttp.NewClient(u.Endpoint()).Get(context.Background(), "1")
		spans := rec.Ended()
		if len(spans) != 1 {
			t.Fatalf("%d spans, want 1", len(spans))
		}
		if got := attrs(spans[0])[attrRetry].AsString(); got != "budget_exhausted" {
			t.Errorf("retry = %q, want budget_exhausted", got)
		}
		if got := attrs(spans[0])[attrBreaker].AsString(); got != "closed" {
			t.Errorf("breaker state = %q, want closed", got)
		}
	})
	t.Run("breaker open", func(t *testing.T) {
		sick := newBackend(t, status(500))
		cfg := DefaultConfig()
		cfg.BreakerFailures, cfg.FailFast, cfg.MaxAttempts = 1, true, 1
		cfg, rec := tracedConfig(t, cfg)
		u := newUpstream(t, "rating", metadatahttp.NewFactory(web.NewTransport()), cfg, sick.addr())
		metadatahttp.NewClient(u.Endpoint()).Get(context.Background(), "1") // fails: the breaker opens
		metadatahttp.NewClient(u.Endpoint()).Get(context.Background(), "1") // skips the instance
		spans := rec.Ended()
		if len(spans) != 2 {
			t.Fatalf("%d spans, want 2", len(spans))
		}
		first, second := attrs(spans[0]), attrs(spans[1])
		if got := first[attrRetry].AsString(); got != "attempts_exhausted" {
			t.Errorf("first retry = %q, want attempts_exhausted", got)
		}
		if got := second[attrOutcome].AsString(); got != "breaker_open" {
			t.Errorf("second outcome = %q, want breaker_open", got)
		}
		if got := second[attrBreaker].AsString(); got != "open" {
			t.Errorf("second breaker state = %q, want open", got)
		}
		// Every instance ejected and failing fast: the call ends, and the
		// last skip's span says so.
		if got := second[attrRetry].AsString(); got != "every_instance_ejected" {
			t.Errorf("second retry = %q, want every_instance_ejected", got)
		}
	})
}
