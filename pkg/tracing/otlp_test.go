package tracing

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"movieexample.com/internal/metricstest"
)

// decodeRequest is a collector's side of encodeRequest.
func decodeRequest(b []byte) ([]*tracepb.ResourceSpans, error) {
	var out []*tracepb.ResourceSpans
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num != 1 || typ != protowire.BytesType {
			return nil, fmt.Errorf("field %d of type %d in the request, want resource_spans (1, bytes)", num, typ)
		}
		b = b[n:]
		m, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil, errors.New("truncated resource_spans")
		}
		b = b[n:]
		rs := &tracepb.ResourceSpans{}
		if err := proto.Unmarshal(m, rs); err != nil {
			return nil, err
		}
		out = append(out, rs)
	}
	return out, nil
}

func TestExporterSendsOTLPProtobuf(t *testing.T) {
	got := make(chan []*tracepb.ResourceSpans, 1)
	var header http.Header
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		header = r.Header.Clone()
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				t.Error(err)
				got <- nil
				return
			}
			body = zr
		}
		b, _ := io.ReadAll(body)
		// Never t.Fatal here: this is the server's goroutine, and the
		// test waits on got.
		rss, err := decodeRequest(b)
		if err != nil {
			t.Error(err)
		}
		got <- rss
	}))
	defer collector.Close()

	rec := tracetest.NewSpanRecorder()
	c := Config{ServiceName: "movie", InstanceID: "movie-1"}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithResource(newResource(c)))
	ctx, parent := tp.Tracer("scope-a").Start(context.Background(), "GET /movie", trace.WithSpanKind(trace.SpanKindServer))
	_, child := tp.Tracer("scope-b").Start(ctx, "rating attempt", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.Int("movieapp.attempt", 1), attribute.StringSlice("tags", []string{"a", "b"})))
	child.RecordError(errors.New("connection refused"))
	child.SetStatus(codes.Error, "unavailable")
	child.End()
	parent.End()

	e := newExporter(Config{Endpoint: collector.URL + "/v1/traces", Headers: map[string]string{"X-Key": "k"}, Gzip: true, Timeout: 5 * time.Second})
	if err := e.ExportSpans(context.Background(), rec.Ended()); err != nil {
		t.Fatal(err)
	}
	rss := <-got
	if ct, key := header.Get("Content-Type"), header.Get("X-Key"); ct != "application/x-protobuf" || key != "k" {
		t.Errorf("Content-Type %q, X-Key %q; want application/x-protobuf and k", ct, key)
	}
	if len(rss) != 1 || len(rss[0].ScopeSpans) != 2 {
		t.Fatalf("%d resources, want 1 with 2 scopes: %v", len(rss), rss)
	}
	res := map[string]string{}
	for _, kv := range rss[0].Resource.Attributes {
		res[kv.Key] = kv.Value.GetStringValue()
	}
	if res["service.name"] != "movie" || res["service.instance.id"] != "movie-1" {
		t.Errorf("resource %v, want service movie, instance movie-1", res)
	}
	spans := map[string]*tracepb.Span{}
	for _, ss := range rss[0].ScopeSpans {
		for _, s := range ss.Spans {
			spans[ss.Scope.Name+" "+s.Name] = s
		}
	}
	p, a := spans["scope-a GET /movie"], spans["scope-b rating attempt"]
	if p == nil || a == nil {
		t.Fatalf("spans %v, want GET /movie in scope-a and rating attempt in scope-b", spans)
	}
	psid := parent.SpanContext().SpanID()
	switch {
	case string(a.ParentSpanId) != string(psid[:]) || string(a.TraceId) != string(p.TraceId):
		t.Error("the attempt is not the server span's child in the same trace")
	case p.Kind != tracepb.Span_SPAN_KIND_SERVER || a.Kind != tracepb.Span_SPAN_KIND_CLIENT:
		t.Errorf("kinds %v and %v, want server and client", p.Kind, a.Kind)
	case a.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR || a.Status.GetMessage() != "unavailable":
		t.Errorf("attempt status %v, want an error, unavailable", a.Status)
	case len(a.Events) != 1 || a.Events[0].Name != "exception":
		t.Errorf("attempt events %v, want the recorded error", a.Events)
	case a.EndTimeUnixNano <= a.StartTimeUnixNano:
		t.Error("the attempt ends before it starts")
	}
	attrs := map[string]*commonpb.AnyValue{}
	for _, kv := range a.Attributes {
		attrs[kv.Key] = kv.Value
	}
	if v := attrs["movieapp.attempt"]; v == nil || v.GetIntValue() != 1 || len(a.Attributes) != 2 {
		t.Errorf("attempt attributes %v, want movieapp.attempt=1 and tags", attrs)
	}
}

func TestExporterCountsAPartialSuccess(t *testing.T) {
	// ExportTraceServiceResponse{partial_success: {rejected_spans: 1, error_message: "too old"}}
	var ps []byte
	ps = protowire.AppendTag(ps, 1, protowire.VarintType)
	ps = protowire.AppendVarint(ps, 1)
	ps = protowire.AppendTag(ps, 2, protowire.BytesType)
	ps = protowire.AppendString(ps, "too old")
	var resp []byte
	resp = protowire.AppendTag(resp, 1, protowire.BytesType)
	resp = protowire.AppendBytes(resp, ps)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(resp)
	}))
	defer collector.Close()
	rec := tracetest.NewSpanRecorder()
	tr := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)).Tracer("t")
	for range 3 {
		_, s := tr.Start(context.Background(), "op")
		s.End()
	}
	reg := prometheus.NewRegistry()
	q := newQueue(newExporter(Config{Endpoint: collector.URL, Timeout: 5 * time.Second}), Config{QueueSize: 8, BatchSize: 8, BatchDelay: time.Hour, ExportTimeout: 5 * time.Second}, reg)
	q.export(rec.Ended())
	if err := q.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	m := metricstest.Gather(t, reg)
	if got, _ := m.Value("movieapp_trace_spans_dropped_total", map[string]string{"reason": "export_failed"}); got != 1 {
		t.Errorf("export_failed %v, want the 1 span the collector rejected", got)
	}
	if got, _ := m.Value("movieapp_trace_spans_exported_total", nil); got != 2 {
		t.Errorf("exported %v, want the other 2", got)
	}
}

func TestExporterReportsARefusal(t *testing.T) {
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusServiceUnavailable)
	}))
	defer collector.Close()
	rec := tracetest.NewSpanRecorder()
	_, s := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)).Tracer("t").Start(context.Background(), "op")
	s.End()
	e := newExporter(Config{Endpoint: collector.URL, Timeout: 5 * time.Second})
	if err := e.ExportSpans(context.Background(), rec.Ended()); err == nil {
		t.Error("a 503 from the collector is no error")
	}
}
