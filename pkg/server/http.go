package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	httptransport "github.com/go-kit/kit/transport/http"
)

// MaxBodyBytes is the largest request body a service reads; a larger one is
// answered 413.
const MaxBodyBytes = 64 << 10

// Errors shared by the services' transports.
var (
	// ErrBodyTooLarge means the request body exceeded MaxBodyBytes.
	ErrBodyTooLarge = errors.New("request body too large")
	// ErrUnsupportedMediaType means a body was sent with a content type other
	// than application/json.
	ErrUnsupportedMediaType = errors.New("content type must be application/json")
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

// ErrorEncoder returns a go-kit error encoder that answers with the status
// statusOf gives for err. For a 4xx the client sees err's message, which the
// services build from their own validation errors only; for a 5xx it sees a
// generic message while the cause goes to the log, once, with the request ID.
func ErrorEncoder(logger *slog.Logger, statusOf func(error) int) httptransport.ErrorEncoder {
	return func(ctx context.Context, err error, w http.ResponseWriter) {
		status := statusOf(err)
		switch {
		case errors.Is(err, ErrBodyTooLarge):
			status = http.StatusRequestEntityTooLarge
		case errors.Is(err, ErrUnsupportedMediaType):
			status = http.StatusUnsupportedMediaType
		}
		msg := err.Error()
		if status >= 500 {
			logger.ErrorContext(ctx, "request failed", "status", status, "err", err)
			msg = strings.ToLower(http.StatusText(status))
		}
		WriteError(w, status, msg)
	}
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

// DecodeJSON decodes a JSON request body into v, strictly: the content type
// must be JSON (or absent), the body at most MaxBodyBytes, with no unknown
// field, no key twice in one object and nothing after the value. It returns
// ErrUnsupportedMediaType, ErrBodyTooLarge, or invalid (wrapped, with the
// reason) for any other malformed body.
func DecodeJSON(r *http.Request, v any, invalid error) error {
	if !isJSON(r.Header.Get("Content-Type")) {
		return ErrUnsupportedMediaType
	}
	body, err := readBody(r)
	if err != nil {
		if errors.Is(err, ErrBodyTooLarge) {
			return err
		}
		return fmt.Errorf("%w: reading the body: %w", invalid, err)
	}
	// checkKeys also rejects malformed JSON, trailing garbage included,
	// before encoding/json sees a body other parsers would read differently.
	if err := checkKeys(body); err != nil {
		var syntax *json.SyntaxError
		switch {
		case errors.Is(err, errDuplicateKey):
			return fmt.Errorf("%w: %w in the JSON body", invalid, err)
		case errors.As(err, &syntax):
			return fmt.Errorf("%w: malformed JSON body at byte %d", invalid, syntax.Offset)
		}
		return fmt.Errorf("%w: malformed JSON body", invalid)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typ *json.UnmarshalTypeError
		switch {
		case errors.Is(err, io.EOF):
			return fmt.Errorf("%w: empty body, a JSON object is expected", invalid)
		case errors.As(err, &typ) && typ.Field == "":
			return fmt.Errorf("%w: the JSON body must be an object", invalid)
		case errors.As(err, &typ):
			return fmt.Errorf("%w: field %.64q must not be a JSON %s", invalid, typ.Field, typ.Value)
		}
		// What is left is encoding/json's `unknown field "x"`.
		return fmt.Errorf("%w: %s", invalid, strings.TrimPrefix(err.Error(), "json: "))
	}
	if dec.More() {
		return fmt.Errorf("%w: more than one JSON value in the body", invalid)
	}
	return nil
}
