package gateway

import (
	"context"
	"net"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"movieexample.com/pkg/identity"
	"movieexample.com/pkg/routing"
)

// The attempt span's own attributes. The instance and address are also in
// the semantic conventions' server.address and server.port.
const (
	attrService  = attribute.Key("movieapp.upstream.service")
	attrInstance = attribute.Key("movieapp.instance.id")
	attrAttempt  = attribute.Key("movieapp.attempt")
	attrOutcome  = attribute.Key("movieapp.outcome")
	attrRetry    = attribute.Key("movieapp.retry")
	attrBreaker  = attribute.Key("movieapp.breaker.state")
	attrBypassed = attribute.Key("movieapp.breaker.bypassed")
)

// spanAttrs returns the attributes of every attempt span on instance (an
// instance string from discovery) of the upstream called service: made once
// per instance, when it is discovered, not per attempt.
func spanAttrs(service, instance string) []attribute.KeyValue {
	bare, _ := routing.Split(instance)
	ident, addr, _ := identity.Split(bare)
	attrs := []attribute.KeyValue{attrService.String(service), attrInstance.String(identity.ID(ident))}
	if host, port, err := net.SplitHostPort(addr); err == nil {
		attrs = append(attrs, semconv.ServerAddress(host))
		if p, err := strconv.Atoi(port); err == nil {
			attrs = append(attrs, semconv.ServerPort(p))
		}
	}
	return attrs
}

// startAttempt starts the client span of attempt number num of a call on n.
// The instance's endpoint makes the request in the span's context, so the
// traceparent it sends names this span: one attempt is one span, in movie
// and as the parent of the instance's server span.
//
// The attributes are set once the span is known to record: an attempt of
// a request that is not sampled (99 in 100 at 1%) then costs no attribute
// slice. The sampler sees none, which the specification's samplers never
// look at.
func (u *Upstream) startAttempt(ctx context.Context, n *node, num int) (context.Context, trace.Span) {
	ctx, span := u.cfg.Tracer.Start(ctx, u.spanName, trace.WithSpanKind(trace.SpanKindClient))
	if span.IsRecording() {
		span.SetAttributes(n.spanAttrs...)
		span.SetAttributes(attrAttempt.Int(num))
	}
	return ctx, span
}

// endAttempt ends span (nil when not tracing) with the attempt's outcome,
// as movieapp_gateway_upstream_requests_total counts it, or breaker_open
// for an instance skipped without being asked; and then, for a failed
// attempt another instance might have answered, what the call did next
// (retried, budget_exhausted...). A failure of the instance (no answer, a
// 5xx, an answer from the wrong instance, a bad or overloaded answer) is an
// error; not found is an answer, and a canceled attempt says nothing about
// the instance.
func endAttempt(span trace.Span, err error, then string) {
	if span == nil {
		return
	}
	if !span.IsRecording() {
		span.End()
		return
	}
	outcome := "breaker_open"
	if !skipped(err) {
		outcome = outcomeOf(err).String()
	}
	span.SetAttributes(attrOutcome.String(outcome))
	if then != "" {
		span.SetAttributes(attrRetry.String(then))
	}
	switch outcome {
	case "ok", "not_found", "canceled", "breaker_open":
	default:
		span.RecordError(err)
		span.SetStatus(codes.Error, outcome)
	}
	span.End()
}
