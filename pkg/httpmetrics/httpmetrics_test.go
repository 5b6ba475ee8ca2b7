package httpmetrics_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"movieexample.com/internal/metricstest"
	"movieexample.com/pkg/httpmetrics"
)

func TestHandlerLabels(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "{}") })
	mux.HandleFunc("/silent", func(http.ResponseWriter, *http.Request) {}) // writes nothing: a 200
	mux.HandleFunc("/twice", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		w.WriteHeader(http.StatusInternalServerError) // ignored by net/http, and by the metrics
	})
	mux.HandleFunc("/flush", func(w http.ResponseWriter, r *http.Request) {
		// http.ResponseController reaches the recorder through Unwrap.
		if err := http.NewResponseController(w).Flush(); err != nil {
			w.WriteHeader(http.StatusTeapot)
		}
	})
	tests := []struct {
		method, path string
		wantLabels   map[string]string
	}{
		{"GET", "/items/7", map[string]string{"route": "/items/{id}", "method": "GET", "code": "200"}},
		{"GET", "/no/such", map[string]string{"route": "unmatched", "method": "GET", "code": "404"}},
		{"GET", "/silent", map[string]string{"route": "/silent", "method": "GET", "code": "200"}},
		{"POST", "/twice", map[string]string{"route": "/twice", "method": "POST", "code": "202"}},
		{"BREW", "/silent", map[string]string{"route": "/silent", "method": "other", "code": "200"}},
		{"GET", "/flush", map[string]string{"route": "/flush", "method": "GET", "code": "200"}},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			h := httpmetrics.New(reg).Handler(false, slog.New(slog.NewTextHandler(io.Discard, nil)), mux)
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(tt.method, tt.path, nil))
			m := metricstest.Gather(t, reg)
			if got, _ := m.Value("movieapp_http_requests_total", tt.wantLabels); got != 1 {
				t.Errorf("movieapp_http_requests_total%v = %v, want 1; series: %v", tt.wantLabels, got, m["movieapp_http_requests_total"])
			}
			durationLabels := map[string]string{"route": tt.wantLabels["route"], "method": tt.wantLabels["method"]}
			if got, _ := m.Value("movieapp_http_request_duration_seconds", durationLabels); got != 1 {
				t.Errorf("movieapp_http_request_duration_seconds%v observations = %v, want 1", durationLabels, got)
			}
		})
	}
}
