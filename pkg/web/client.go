package web

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/sd"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"movieexample.com/pkg/errs"
	"movieexample.com/pkg/identity"
	"movieexample.com/pkg/requestid"
)

// Errors of an upstream's answer, as the endpoints of GetFactory return them.
var (
	// ErrBadResponse means an instance answered with something a caller
	// cannot trust: a malformed or oversized body, or an unexpected status.
	ErrBadResponse = errs.New(errs.BadGateway, "bad upstream response")
	// ErrUpstreamStatus means an instance answered with a 5xx status; it is
	// Unavailable, so another instance may answer.
	ErrUpstreamStatus = errs.New(errs.Unavailable, "upstream answered")
)

// NewTransport returns a transport for calls to upstream instances. Each
// attempt's context bounds its call, so it needs no timer of its own for the
// response; the headers of an answer are bounded like its body; the pool keeps enough idle connections per instance for a
// gateway's fan-out (the default keeps 2, which under load means a new TCP
// connection for most calls); and the answers, a few hundred bytes of JSON
// inside the cluster, are not worth asking for gzip.
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy:               nil, // upstreams are discovered addresses, never reached through a proxy
		DialContext:         (&net.Dialer{Timeout: time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		// An answer's headers are a few hundred bytes; the default limit
		// (1 MB) would let any server at a discovered address, trusted or
		// not, make movie read that much per call.
		MaxResponseHeaderBytes: MaxAnswerBytes,
	}
}

// MaxAnswerBytes is how much of an upstream's answer a caller reads; a
// longer one is ErrBadResponse.
const MaxAnswerBytes = 64 << 10

// DecodeFunc turns an upstream's answer into an endpoint's response.
type DecodeFunc func(*http.Response) (any, error)

// GetFactory returns an sd.Factory whose endpoint, for one instance, is a
// GET of path with the query that encode makes of the request, its answer
// decoded by dec, and the caller's request ID forwarded so that one ID
// follows the request through every service's logs, and the caller's span
// in a traceparent header, so that one trace does too.
//
// The instance is an instance string from discovery, which names the
// instance as well as its address (identity.Instance). An answer is decoded
// only if it carries that identity in its identity.Header: any other answer,
// whatever its status, came from some other process now listening at the
// address, and is an *identity.MismatchError (identity.ErrWrongInstance).
// That is what makes a 404 mean "not found" rather than "wrong server". An
// instance string without an identity is refused: its answers could not be
// checked.
//
// It is what go-kit's httptransport.Client does for a GET, without what a
// GET does not need: the go-kit client formats and parses its target URL
// again, wraps the context in one more cancel and copies the request on
// every call. And a call is one round trip, made on the transport itself:
// http.Client would add what an upstream call must not do (follow
// redirects, keep cookies) and copy the request's headers on every call in
// case it does (docs/benchmarks.md has what both cost). An upstream's 3xx is
// an answer the decoder refuses, as any other status it does not expect.
func GetFactory(rt http.RoundTripper, path string, encode func(req any) string, dec DecodeFunc) sd.Factory {
	return func(instance string) (endpoint.Endpoint, io.Closer, error) {
		want, addr, ok := identity.Split(instance)
		if !ok {
			return nil, nil, fmt.Errorf("instance %q names no identity to check its answers against", instance)
		}
		target := "http://" + addr + path + "?"
		return func(ctx context.Context, req any) (any, error) {
			r, err := http.NewRequestWithContext(ctx, http.MethodGet, target+encode(req), nil)
			if err != nil {
				return nil, err
			}
			requestid.Forward(ctx, r.Header)
			// The attempt's span, when the caller traces (pkg/gateway):
			// its traceparent makes the instance's server span its child.
			span := trace.SpanFromContext(ctx)
			if span.SpanContext().IsValid() {
				otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(r.Header))
			}
			resp, err := rt.RoundTrip(r)
			if err != nil {
				return nil, err
			}
			if span.IsRecording() {
				span.SetAttributes(semconv.HTTPRequestMethodGet, semconv.URLFull(r.URL.String()),
					semconv.HTTPResponseStatusCode(resp.StatusCode))
			}
			defer resp.Body.Close()
			// Direct map access: the header is canonical, and Get would
			// canonicalise it again on every call.
			if got := resp.Header[identity.Header]; len(got) != 1 || got[0] != want {
				// Drained (within bounds) so the connection can be reused.
				_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, MaxAnswerBytes))
				return nil, &identity.MismatchError{Addr: addr, Want: want, Got: identity.Quote(got)}
			}
			return dec(resp)
		}, nil, nil
	}
}

// DecodeAnswer returns a DecodeFunc that reads at most max bytes of an
// answer and turns a 200 into a T that check accepts. A 404 is notFound, the
// caller's own error; a 503 with Retry-After is errs.ErrOverloaded (the
// instance refused the request for being busy: see WriteOverloaded); any other
// 5xx is ErrUpstreamStatus; anything else, an
// unexpected status or a body that is too large, malformed or refused by
// check, is ErrBadResponse. The body is read to its end (within max) even for
// errors, so the connection can be reused.
func DecodeAnswer[T any](max int64, notFound error, check func(T) error) DecodeFunc {
	return func(resp *http.Response) (any, error) {
		body, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
		if err != nil {
			return nil, fmt.Errorf("read upstream body: %w", err)
		}
		switch {
		case resp.StatusCode == http.StatusNotFound:
			return nil, notFound
		case resp.StatusCode == http.StatusServiceUnavailable && len(resp.Header["Retry-After"]) > 0:
			return nil, fmt.Errorf("upstream %w: 503 with Retry-After", errs.ErrOverloaded)
		case resp.StatusCode >= 500:
			return nil, fmt.Errorf("%w %d", ErrUpstreamStatus, resp.StatusCode)
		case resp.StatusCode != http.StatusOK:
			return nil, fmt.Errorf("%w: status %d", ErrBadResponse, resp.StatusCode)
		case int64(len(body)) > max:
			return nil, fmt.Errorf("%w: body over %d bytes", ErrBadResponse, max)
		}
		var v T
		if err := json.Unmarshal(body, &v); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadResponse, err)
		}
		if err := check(v); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadResponse, err)
		}
		return v, nil
	}
}
