package logging_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"movieexample.com/pkg/logging"
	"movieexample.com/pkg/requestid"
)

func TestContextIDsOnEveryLine(t *testing.T) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0x0a, 0xf7, 0x65, 0x19, 1}, SpanID: trace.SpanID{0xb7, 0xad, 2}, TraceFlags: trace.FlagsSampled})
	tests := []struct {
		name string
		ctx  context.Context
		want map[string]string // fields that must be there; "" means absent
	}{
		{"no request", context.Background(), map[string]string{"request_id": "", "trace_id": "", "span_id": ""}},
		{"request, tracing off", requestid.NewContext(context.Background(), "req-1"),
			map[string]string{"request_id": "req-1", "trace_id": "", "span_id": ""}},
		{"request in a span", trace.ContextWithSpanContext(requestid.NewContext(context.Background(), "req-2"), sc),
			map[string]string{"request_id": "req-2", "trace_id": sc.TraceID().String(), "span_id": sc.SpanID().String()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			logger, err := logging.New(&buf, logging.FormatJSON, slog.LevelInfo, "service", "movie")
			if err != nil {
				t.Fatal(err)
			}
			logger.InfoContext(tt.ctx, "request")
			var line map[string]any
			if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
				t.Fatal(err)
			}
			for k, want := range tt.want {
				got, _ := line[k].(string)
				if got != want {
					t.Errorf("%s = %q, want %q (line %s)", k, got, want, buf.String())
				}
			}
		})
	}
}
