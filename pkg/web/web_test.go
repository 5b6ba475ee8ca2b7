package web_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"movieexample.com/pkg/errs"
	"movieexample.com/pkg/logging"
	"movieexample.com/pkg/requestid"
	"movieexample.com/pkg/web"
)

func TestStatus(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"invalid", errs.ErrInvalid, http.StatusBadRequest},
		{"invalid, wrapped with the reason", fmt.Errorf("%w: id must be set", errs.ErrInvalid), http.StatusBadRequest},
		{"not found", errs.New(errs.NotFound, "movie not found"), http.StatusNotFound},
		{"too large", web.ErrBodyTooLarge, http.StatusRequestEntityTooLarge},
		{"unsupported media type", web.ErrUnsupportedMediaType, http.StatusUnsupportedMediaType},
		{"unavailable", errs.New(errs.Unavailable, "store unavailable"), http.StatusServiceUnavailable},
		{"upstream 5xx", fmt.Errorf("%w 503", web.ErrUpstreamStatus), http.StatusServiceUnavailable},
		{"bad gateway", web.ErrBadResponse, http.StatusBadGateway},
		{"bad gateway, wrapped twice", fmt.Errorf("get: %w", fmt.Errorf("%w: status 302", web.ErrBadResponse)), http.StatusBadGateway},
		{"internal kind", errs.New(errs.Internal, "bug"), http.StatusInternalServerError},
		{"unknown error", errors.New("nil map write"), http.StatusInternalServerError},
		{"unknown kind", errs.New(errs.Kind(99), "from the future"), http.StatusInternalServerError},
		{"kind lost by %v", fmt.Errorf("%v", errs.ErrInvalid), http.StatusInternalServerError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := web.Status(tt.err); got != tt.want {
				t.Errorf("Status(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

func TestErrorEncoder(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantBody   string // the error the client sees
		wantLogged bool
		retryAfter string // the Retry-After header; "" for none
	}{
		{name: "4xx shows the message", err: fmt.Errorf("%w: id must be set", errs.ErrInvalid),
			wantStatus: 400, wantBody: "invalid argument: id must be set"},
		{name: "not found shows the message", err: errs.New(errs.NotFound, "movie not found"),
			wantStatus: 404, wantBody: "movie not found"},
		{name: "too large", err: web.ErrBodyTooLarge, wantStatus: 413, wantBody: "request body too large"},
		{name: "5xx is generic and logged", err: fmt.Errorf("query db:5432 as admin: %w", errs.New(errs.Unavailable, "store unavailable")),
			wantStatus: 503, wantBody: "service unavailable", wantLogged: true},
		{name: "upstreams that shed: 503 with Retry-After",
			err:        fmt.Errorf("metadata service unavailable: upstream unavailable: metadata: upstream %w", errs.ErrOverloaded),
			wantStatus: 503, wantBody: "service unavailable", wantLogged: true, retryAfter: web.RetryAfter},
		{name: "bad gateway is generic and logged", err: fmt.Errorf("%w: status 302", web.ErrBadResponse),
			wantStatus: 502, wantBody: "bad gateway", wantLogged: true},
		{name: "unknown error is a generic 500, logged", err: errors.New("secret detail of a bug"),
			wantStatus: 500, wantBody: "internal server error", wantLogged: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs strings.Builder
			logger, err := logging.New(&logs, logging.FormatJSON, slog.LevelInfo)
			if err != nil {
				t.Fatal(err)
			}
			ctx := requestid.NewContext(context.Background(), "req-1")
			rec := httptest.NewRecorder()
			web.ErrorEncoder(logger)(ctx, tt.err, rec)

			if rec.Code != tt.wantStatus {
				t.Errorf("status = %d, want %d", rec.Code, tt.wantStatus)
			}
			if got := rec.Header().Get("Retry-After"); got != tt.retryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tt.retryAfter)
			}
			if got, want := rec.Header().Get("Content-Type"), "application/json; charset=utf-8"; got != want {
				t.Errorf("Content-Type = %q, want %q", got, want)
			}
			var body web.ErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q is not the JSON error shape: %v", rec.Body, err)
			}
			if body.Error != tt.wantBody {
				t.Errorf("body error = %q, want %q", body.Error, tt.wantBody)
			}

			lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
			if logs.Len() == 0 {
				lines = nil
			}
			if !tt.wantLogged {
				if len(lines) != 0 {
					t.Errorf("a 4xx was logged: %s", logs.String())
				}
				return
			}
			if len(lines) != 1 {
				t.Fatalf("%d log lines, want the cause logged once:\n%s", len(lines), logs.String())
			}
			var logged map[string]any
			if err := json.Unmarshal([]byte(lines[0]), &logged); err != nil {
				t.Fatalf("log line is not JSON: %q", lines[0])
			}
			want := map[string]any{"level": "ERROR", "err": tt.err.Error(), "status": float64(tt.wantStatus), "request_id": "req-1"}
			for k, v := range want {
				if logged[k] != v {
					t.Errorf("log %s = %v, want %v", k, logged[k], v)
				}
			}
		})
	}
}

func TestMethods(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	h := web.Methods{http.MethodPut: ok, http.MethodGet: ok}
	tests := []struct {
		method    string
		want      int
		wantAllow string
	}{
		{http.MethodGet, http.StatusNoContent, ""},
		{http.MethodPut, http.StatusNoContent, ""},
		{http.MethodPost, http.StatusMethodNotAllowed, "GET, PUT"},
		{"BREW", http.StatusMethodNotAllowed, "GET, PUT"},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, "/x", nil))
			if rec.Code != tt.want {
				t.Errorf("status = %d, want %d", rec.Code, tt.want)
			}
			if got := rec.Header().Get("Allow"); got != tt.wantAllow {
				t.Errorf("Allow = %q, want %q", got, tt.wantAllow)
			}
		})
	}
}

// TestErrorEncoderClientGone checks that only a canceled request context is
// a client that went away: answered 499 and logged at info level without the
// cause, while a deadline that expired inside the server stays a 5xx logged
// as an error.
func TestErrorEncoderClientGone(t *testing.T) {
	upstreamDown := errs.New(errs.Unavailable, "metadata service unavailable")
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancelExpired := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancelExpired()
	tests := []struct {
		name       string
		ctx        context.Context // the request's context
		err        error
		wantStatus int
		wantLevel  string
		wantMsg    string
	}{
		{name: "client canceled an upstream call", ctx: canceled,
			err:        fmt.Errorf("%w: upstream unavailable: metadata: %w", upstreamDown, context.Canceled),
			wantStatus: web.StatusClientClosedRequest, wantLevel: "INFO", wantMsg: "client went away"},
		{name: "client gone, error of another kind", ctx: canceled, err: errors.New("secret detail of a bug"),
			wantStatus: web.StatusClientClosedRequest, wantLevel: "INFO", wantMsg: "client went away"},
		{name: "client gone during a 4xx", ctx: canceled, err: fmt.Errorf("%w: id must be set", errs.ErrInvalid),
			wantStatus: web.StatusClientClosedRequest, wantLevel: "INFO", wantMsg: "client went away"},
		{name: "upstream attempt timed out", ctx: context.Background(),
			err:        fmt.Errorf("%w: upstream unavailable: metadata: %w", upstreamDown, context.DeadlineExceeded),
			wantStatus: http.StatusServiceUnavailable, wantLevel: "ERROR", wantMsg: "request failed"},
		{name: "request context past its deadline", ctx: expired,
			err:        fmt.Errorf("%w: %w", upstreamDown, context.DeadlineExceeded),
			wantStatus: http.StatusServiceUnavailable, wantLevel: "ERROR", wantMsg: "request failed"},
		{name: "call canceled by the server, client still there", ctx: context.Background(),
			err:        fmt.Errorf("%w: bad upstream response: %w", web.ErrBadResponse, context.Canceled),
			wantStatus: http.StatusBadGateway, wantLevel: "ERROR", wantMsg: "request failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs strings.Builder
			logger, err := logging.New(&logs, logging.FormatJSON, slog.LevelInfo)
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			web.ErrorEncoder(logger)(requestid.NewContext(tt.ctx, "req-1"), tt.err, rec)

			if rec.Code != tt.wantStatus {
				t.Errorf("status = %d, want %d", rec.Code, tt.wantStatus)
			}
			lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
			if len(lines) != 1 {
				t.Fatalf("%d log lines, want 1:\n%s", len(lines), logs.String())
			}
			var logged map[string]any
			if err := json.Unmarshal([]byte(lines[0]), &logged); err != nil {
				t.Fatalf("log line is not JSON: %q", lines[0])
			}
			want := map[string]any{"level": tt.wantLevel, "msg": tt.wantMsg, "status": float64(tt.wantStatus), "request_id": "req-1"}
			for k, v := range want {
				if logged[k] != v {
					t.Errorf("log %s = %v, want %v", k, logged[k], v)
				}
			}
			if _, ok := logged["err"]; ok && tt.wantLevel == "INFO" {
				t.Errorf("a hang-up was logged with its cause: %s", lines[0])
			}
		})
	}
}

func TestWriteOverloaded(t *testing.T) {
	rec := httptest.NewRecorder()
	web.WriteOverloaded(rec)
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("status = %d, want 503", rec.Code)
	}
	if got := rec.Header().Get("Retry-After"); got != web.RetryAfter {
		t.Errorf("Retry-After = %q, want %q", got, web.RetryAfter)
	}
	var body web.ErrorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error != web.MsgOverloaded {
		t.Errorf("body %q, want the JSON error shape with %q (%v)", rec.Body, web.MsgOverloaded, err)
	}
}
