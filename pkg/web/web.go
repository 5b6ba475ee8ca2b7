// Package web holds movieapp's HTTP conventions, the same for every service
// and for both sides of a call: one JSON shape for errors, one table from
// error kind (pkg/errs) to status code, strict decoding of what clients
// send (decode.go), and the reading of what upstreams answer (client.go).
package web

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/go-kit/kit/endpoint"
	httptransport "github.com/go-kit/kit/transport/http"

	"movieexample.com/pkg/errs"
)

// ErrorBody is the one shape of every error response.
type ErrorBody struct {
	Error string `json:"error"`
}

// WriteError writes status with a JSON error body.
func WriteError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(ErrorBody{Error: msg})
}

// RetryAfter is the Retry-After, in seconds, of every 503 that means "too
// busy now": the shortest wait HTTP can say in its own unit, and about the
// time a burst over an instance's limit takes to clear, which is measured in
// milliseconds to seconds, not minutes (docs/resilience.md#overload).
const RetryAfter = "1"

// MsgOverloaded is the error message of an instance's answer to a request
// over its limit.
const MsgOverloaded = "overloaded; retry later"

// WriteOverloaded answers a request the instance refuses because it has
// as many in flight as it admits: a 503 with Retry-After and the JSON error
// body, which a gateway reads as errs.ErrOverloaded (DecodeAnswer).
func WriteOverloaded(w http.ResponseWriter) {
	w.Header().Set("Retry-After", RetryAfter)
	WriteError(w, http.StatusServiceUnavailable, MsgOverloaded)
}

// Status is the one table from error kind to HTTP status.
func Status(err error) int {
	switch errs.KindOf(err) {
	case errs.Invalid:
		return http.StatusBadRequest
	case errs.NotFound:
		return http.StatusNotFound
	case errs.TooLarge:
		return http.StatusRequestEntityTooLarge
	case errs.UnsupportedMediaType:
		return http.StatusUnsupportedMediaType
	case errs.Unavailable:
		return http.StatusServiceUnavailable
	case errs.BadGateway:
		return http.StatusBadGateway
	}
	return http.StatusInternalServerError
}

// StatusClientClosedRequest is the status of a request whose client went
// away before its answer was ready: nginx's 499 "client closed request". No
// client receives it; it is what the request metrics and the access log
// record, so that a hang-up is neither counted nor logged as a server error.
const StatusClientClosedRequest = 499

// ErrorEncoder returns a go-kit error encoder that answers with the status
// of err's kind. For a 4xx the client sees err's message, which the services
// build from their own validation errors only; for a 5xx it sees a generic
// message while the cause goes to the log, once, with the request ID.
//
// A 503 whose cause is errs.ErrOverloaded (upstreams that shed) carries Retry-After, as
// the upstream's own answer did.
//
// When the client has gone away, whatever err says (typically an upstream
// call abandoned with the request, a 503), the answer is
// StatusClientClosedRequest, logged at info level without the cause.
func ErrorEncoder(logger *slog.Logger) httptransport.ErrorEncoder {
	return func(ctx context.Context, err error, w http.ResponseWriter) {
		if clientGone(ctx) {
			logger.InfoContext(ctx, "client went away", "status", StatusClientClosedRequest)
			WriteError(w, StatusClientClosedRequest, "client closed request")
			return
		}
		status := Status(err)
		msg := err.Error()
		if status == http.StatusServiceUnavailable && errors.Is(err, errs.ErrOverloaded) {
			// The upstreams refused the work for being busy, not broken:
			// the caller is told to back off as they told us.
			w.Header().Set("Retry-After", RetryAfter)
		}
		if status >= 500 {
			logger.ErrorContext(ctx, "request failed", "status", status, "err", err)
			msg = strings.ToLower(http.StatusText(status))
		}
		WriteError(w, status, msg)
	}
}

// clientGone reports whether ctx, a request's context, was canceled: net/http
// cancels it when the client closes the connection (or resets its HTTP/2
// stream). The error is not asked: a call the server canceled itself fails
// with context.Canceled too, and is the server's failure. A deadline that
// expired inside the server (an upstream attempt's timeout) ends a context
// of the server's own, not the request's, and stays a logged 5xx.
func clientGone(ctx context.Context) bool {
	return errors.Is(ctx.Err(), context.Canceled)
}

// NewServer returns a go-kit HTTP server for one endpoint, with the
// options every movieapp route shares: errors answered by ErrorEncoder, and
// JSON responses.
func NewServer(e endpoint.Endpoint, dec httptransport.DecodeRequestFunc, logger *slog.Logger) *httptransport.Server {
	return httptransport.NewServer(e, dec, httptransport.EncodeJSONResponse,
		httptransport.ServerErrorEncoder(ErrorEncoder(logger)))
}

// NewMux returns a ServeMux whose unknown paths get a JSON 404.
func NewMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, http.StatusNotFound, "no route for "+r.URL.Path)
	})
	return mux
}

// Methods routes a request by method and answers any other method with a
// JSON 405 that lists the allowed ones in the Allow header, as RFC 9110 asks.
type Methods map[string]http.Handler

func (m Methods) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h, ok := m[r.Method]; ok {
		h.ServeHTTP(w, r)
		return
	}
	allowed := make([]string, 0, len(m))
	for method := range m {
		allowed = append(allowed, method)
	}
	slices.Sort(allowed)
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	WriteError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
}

// RecoverPanics turns a panic in a handler into a logged 500 with the JSON
// error body, instead of a connection dropped without an answer.
func RecoverPanics(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				logger.ErrorContext(r.Context(), "handler panicked", "panic", v, "stack", string(debug.Stack()))
				WriteError(w, http.StatusInternalServerError, "internal server error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}
