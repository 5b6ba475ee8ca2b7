package ops_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"movieexample.com/pkg/ops"
	"movieexample.com/pkg/web"
)

// opsServer serves the operational routes on a loopback port, with /ready
// answering whatever notReady holds (nil: ready).
func opsServer(t *testing.T, pprof bool, notReady *atomic.Pointer[error]) *httptest.Server {
	t.Helper()
	mux := web.NewMux()
	ops.Routes(mux, func() error {
		if err := notReady.Load(); err != nil {
			return *err
		}
		return nil
	}, ops.NewRegistry(), pprof)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestRoutes(t *testing.T) {
	reason := errors.New("not registered in Consul")
	tests := []struct {
		name         string
		pprof        bool
		notReady     error
		method, path string
		wantStatus   int
		wantInBody   string
	}{
		{name: "health", method: "GET", path: "/health", wantStatus: 200, wantInBody: `"status":"ok"`},
		{name: "health while not ready", notReady: reason, method: "GET", path: "/health", wantStatus: 200, wantInBody: `"status":"ok"`},
		{name: "ready", method: "GET", path: "/ready", wantStatus: 200, wantInBody: `"status":"ready"`},
		{name: "not ready says why", notReady: reason, method: "GET", path: "/ready", wantStatus: 503,
			wantInBody: `{"status":"not ready","reason":"not registered in Consul"}`},
		{name: "ready refuses POST", method: "POST", path: "/ready", wantStatus: 405, wantInBody: `"error"`},
		{name: "metrics", method: "GET", path: "/metrics", wantStatus: 200, wantInBody: "movieapp_build_info{"},
		{name: "no pprof by default", method: "GET", path: "/debug/pprof/", wantStatus: 404, wantInBody: `"error"`},
		{name: "pprof when asked", pprof: true, method: "GET", path: "/debug/pprof/", wantStatus: 200, wantInBody: "goroutine"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var notReady atomic.Pointer[error]
			if tt.notReady != nil {
				notReady.Store(&tt.notReady)
			}
			srv := opsServer(t, tt.pprof, &notReady)
			req, err := http.NewRequest(tt.method, srv.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus || !strings.Contains(string(body), tt.wantInBody) {
				t.Errorf("%s %s = %d %s; want %d containing %s", tt.method, tt.path, resp.StatusCode, body, tt.wantStatus, tt.wantInBody)
			}
		})
	}
}

func TestProbe(t *testing.T) {
	var notReady atomic.Pointer[error]
	srv := opsServer(t, false, &notReady)
	port := srv.Listener.Addr().(*net.TCPAddr).Port

	if err := ops.Probe(context.Background(), port); err != nil {
		t.Errorf("Probe of a ready instance: %v", err)
	}
	reason := errors.New("no rating instance discovered")
	notReady.Store(&reason)
	if err := ops.Probe(context.Background(), port); err == nil || !strings.Contains(err.Error(), "503") ||
		!strings.Contains(err.Error(), reason.Error()) {
		t.Errorf("Probe of an instance not ready: err = %v, want the 503 and its reason", err)
	}
	srv.Close()
	if err := ops.Probe(context.Background(), port); err == nil {
		t.Error("Probe with nothing listening: want an error")
	}
}
