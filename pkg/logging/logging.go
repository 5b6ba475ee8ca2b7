// Package logging builds movieapp's structured loggers: JSON when the output
// is not a terminal (for log collectors), text on a terminal (for people),
// with the service name and instance ID on every line, and the request ID and
// the trace and span IDs on every line written with a request's context.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"go.opentelemetry.io/otel/trace"
	"golang.org/x/term"

	"movieexample.com/pkg/requestid"
)

// Formats accepted by New.
const (
	FormatAuto = "auto" // text on a terminal, JSON otherwise
	FormatJSON = "json"
	FormatText = "text"
)

// New returns a logger writing to w in format at level, with attrs on every
// line. It returns an error for an unknown format.
func New(w io.Writer, format string, level slog.Level, attrs ...any) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch format {
	case FormatAuto, "":
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			h = slog.NewTextHandler(w, opts)
		} else {
			h = slog.NewJSONHandler(w, opts)
		}
	case FormatJSON:
		h = slog.NewJSONHandler(w, opts)
	case FormatText:
		h = slog.NewTextHandler(w, opts)
	default:
		return nil, fmt.Errorf("unknown log format %q (want auto, json or text)", format)
	}
	return slog.New(contextHandler{h}).With(attrs...), nil
}

// contextHandler adds the request ID found in a record's context, and the
// IDs of its span when there is one, which is what takes a reader from a
// log line to the request's trace (with tracing off there never is one).
// The span's IDs are the span that wrote the line: the request's server
// span, or movie's attempt span for a line about one upstream attempt.
type contextHandler struct{ slog.Handler }

func (h contextHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := requestid.FromContext(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h contextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return contextHandler{h.Handler.WithAttrs(attrs)}
}

func (h contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{h.Handler.WithGroup(name)}
}
