package instance

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"movieexample.com/internal/metricstest"
	"movieexample.com/pkg/discovery"
	"movieexample.com/pkg/logging"
	"movieexample.com/pkg/ops"
	"movieexample.com/pkg/requestid"
	"movieexample.com/pkg/web"
)

// syncBuffer is a log destination the server's goroutines and the test can
// share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// instrumentedServer serves the handler stack Run builds (request IDs,
// metrics, panic recovery, operational routes), from the server Run builds,
// around a small app with a fixed route, a route with a wildcard and a route
// that panics.
func instrumentedServer(t *testing.T, accessLog bool, logs io.Writer) *httptest.Server {
	t.Helper()
	logger := testLogger(t, logs)
	mux := web.NewMux()
	mux.Handle("/hello", web.Methods{http.MethodGet: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"hello":"world"}`)
	})})
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{}`)
	})
	mux.HandleFunc("/panic", func(http.ResponseWriter, *http.Request) { panic("boom") })
	return serveStack(t, mux, accessLog, logger)
}

// testLogger returns a JSON logger to logs (nil discards), with the service
// and instance of instrumentedServer's lines.
func testLogger(t *testing.T, logs io.Writer) *slog.Logger {
	t.Helper()
	if logs == nil {
		logs = io.Discard
	}
	logger, err := logging.New(logs, logging.FormatJSON, slog.LevelInfo, "service", "rating", "instance_id", "rating-test")
	if err != nil {
		t.Fatal(err)
	}
	return logger
}

// serveStack serves routes behind the handler stack Run builds, from the
// server Run builds.
func serveStack(t *testing.T, routes *http.ServeMux, accessLog bool, logger *slog.Logger) *httptest.Server {
	t.Helper()
	app := App{
		Config:  Config{Service: "rating", AccessLog: accessLog},
		Logger:  logger,
		Routes:  routes,
		Metrics: ops.NewRegistry(),
	}
	srv := httptest.NewServer((&server{app: app}).newHTTPServer().Handler)
	t.Cleanup(srv.Close)
	return srv
}

func send(t *testing.T, method, url string, header http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func TestMetricsExposition(t *testing.T) {
	srv := instrumentedServer(t, false, nil)
	send(t, "GET", srv.URL+"/hello", nil)
	m := metricstest.Scrape(t, srv.URL+"/metrics")

	tests := []struct {
		name, typ string
		labels    []string
	}{
		{"movieapp_http_requests_total", "counter", []string{"code", "method", "route"}},
		{"movieapp_http_request_duration_seconds", "histogram", []string{"method", "route"}},
		{"movieapp_build_info", "gauge", []string{"goversion", "version"}},
		{"go_goroutines", "gauge", nil},
		{"go_memstats_alloc_bytes", "gauge", nil},
		{"process_cpu_seconds_total", "counter", nil},
		{"process_resident_memory_bytes", "gauge", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := m.Type(tt.name); got != tt.typ {
				t.Fatalf("type = %q, want %q", got, tt.typ)
			}
			if got := m.LabelNames(tt.name); !slices.Equal(got, tt.labels) {
				t.Errorf("labels = %v, want %v", got, tt.labels)
			}
		})
	}
	if v, ok := m.Value("movieapp_build_info", map[string]string{"version": ops.Version, "goversion": runtime.Version()}); !ok || v != 1 {
		t.Errorf("movieapp_build_info{version=%q} = %v (present: %v), want 1", ops.Version, v, ok)
	}
	if problems := m.Lint(t, "movieapp_"); len(problems) > 0 {
		t.Errorf("promlint: %v", problems)
	}
}

func TestRequestMetricsCount(t *testing.T) {
	srv := instrumentedServer(t, false, nil)
	for range 3 {
		send(t, "GET", srv.URL+"/hello", nil)
	}
	send(t, "POST", srv.URL+"/hello", nil)
	send(t, "GET", srv.URL+"/nowhere", nil)
	send(t, "GET", srv.URL+"/panic", nil)
	send(t, "GET", srv.URL+"/health", nil)
	m := metricstest.Scrape(t, srv.URL+"/metrics")

	tests := []struct {
		route, method, code string
		want                float64
	}{
		{"/hello", "GET", "200", 3},
		{"/hello", "POST", "405", 1},
		{"unmatched", "GET", "404", 1},
		{"/panic", "GET", "500", 1}, // a recovered panic is counted as the 500 it became
		{"/health", "GET", "200", 1},
	}
	for _, tt := range tests {
		labels := map[string]string{"route": tt.route, "method": tt.method, "code": tt.code}
		if got, _ := m.Value("movieapp_http_requests_total", labels); got != tt.want {
			t.Errorf("movieapp_http_requests_total%v = %v, want %v", labels, got, tt.want)
		}
	}
	if got, _ := m.Value("movieapp_http_request_duration_seconds", map[string]string{"route": "/hello", "method": "GET"}); got != 3 {
		t.Errorf("duration observations for GET /hello = %v, want 3", got)
	}

	// The counters keep moving: three more, and the next scrape has them.
	for range 3 {
		send(t, "GET", srv.URL+"/hello", nil)
	}
	m = metricstest.Scrape(t, srv.URL+"/metrics")
	if got, _ := m.Value("movieapp_http_requests_total", map[string]string{"route": "/hello", "method": "GET", "code": "200"}); got != 6 {
		t.Errorf("after 3 more: GET /hello 200 = %v, want 6", got)
	}
}

func TestRouteLabelStaysBounded(t *testing.T) {
	srv := instrumentedServer(t, false, nil)
	methods := []string{"GET", "PUT", "DELETE", "PROPFIND", "BREW", "X-ANYTHING"}
	for i := range 200 {
		paths := []string{
			fmt.Sprintf("/items/%d", rand.Int64()),
			fmt.Sprintf("/hello/%d", i),
			fmt.Sprintf("/%x/%x", rand.Uint64(), rand.Uint64()),
			"/metrics/../" + fmt.Sprint(i),
		}
		for _, p := range paths {
			send(t, methods[i%len(methods)], srv.URL+p, nil)
		}
	}
	m := metricstest.Scrape(t, srv.URL+"/metrics")
	routes := m.LabelValues("movieapp_http_requests_total", "route")
	for _, r := range routes {
		if !slices.Contains([]string{"/hello", "/items/{id}", "/panic", "/health", "/ready", "/metrics", "unmatched"}, r) {
			t.Errorf("route label %q is not a pattern of the mux", r)
		}
	}
	if !slices.Contains(routes, "/items/{id}") {
		t.Errorf("routes %v: /items/123 must count as its pattern /items/{id}", routes)
	}
	for _, method := range m.LabelValues("movieapp_http_requests_total", "method") {
		if !slices.Contains([]string{"GET", "PUT", "DELETE", "other"}, method) {
			t.Errorf("method label %q: unknown methods must count as \"other\"", method)
		}
	}
	if n := len(m["movieapp_http_requests_total"].GetMetric()); n > 20 {
		t.Errorf("%d series after 800 distinct paths; the label set must stay small", n)
	}
}

func TestTwoServersInOneProcessKeepTheirOwnMetrics(t *testing.T) {
	// Every metric of an instance, discovery's included, lives in the
	// instance's own registry: building two in one process must neither
	// panic with a duplicate registration nor mix their counts.
	a, b := instrumentedServer(t, false, nil), instrumentedServer(t, false, nil)
	discovery.NewMetrics(ops.NewRegistry())
	discovery.NewMetrics(ops.NewRegistry())
	send(t, "GET", a.URL+"/hello", nil)
	send(t, "GET", a.URL+"/hello", nil)
	send(t, "GET", b.URL+"/hello", nil)
	ok := map[string]string{"route": "/hello", "method": "GET", "code": "200"}
	if got, _ := metricstest.Scrape(t, a.URL+"/metrics").Value("movieapp_http_requests_total", ok); got != 2 {
		t.Errorf("server a counted %v requests, want 2", got)
	}
	if got, _ := metricstest.Scrape(t, b.URL+"/metrics").Value("movieapp_http_requests_total", ok); got != 1 {
		t.Errorf("server b counted %v requests, want 1", got)
	}
}

func TestAccessLogCarriesTheRequestID(t *testing.T) {
	tests := []struct {
		name      string
		accessLog bool
		sentID    string // "" sends none
		wantLines int
	}{
		{name: "off by default", accessLog: false, sentID: "abc-123", wantLines: 0},
		{name: "on, caller's ID kept", accessLog: true, sentID: "abc-123", wantLines: 1},
		{name: "on, ID generated", accessLog: true, wantLines: 1},
		{name: "on, ID with a space replaced", accessLog: true, sentID: "has a space", wantLines: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &syncBuffer{}
			srv := instrumentedServer(t, tt.accessLog, logs)
			h := http.Header{}
			if tt.sentID != "" {
				h.Set(requestid.Header, tt.sentID)
			}
			resp := send(t, "GET", srv.URL+"/items/42", h)
			id := resp.Header.Get(requestid.Header)
			switch {
			case id == "":
				t.Fatal("no X-Request-ID in the response")
			case tt.sentID == "abc-123" && id != tt.sentID:
				t.Errorf("response X-Request-ID = %q, want the caller's %q", id, tt.sentID)
			case tt.sentID == "has a space" && id == tt.sentID:
				t.Error("a caller ID with a space was kept")
			}
			srv.Close() // the access log line is written before the response ends; Close waits for the handler
			var lines []map[string]any
			for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
				if l == "" {
					continue
				}
				var rec map[string]any
				if err := json.Unmarshal([]byte(l), &rec); err != nil {
					t.Fatalf("log line is not JSON: %q", l)
				}
				lines = append(lines, rec)
			}
			if len(lines) != tt.wantLines {
				t.Fatalf("%d log lines, want %d:\n%s", len(lines), tt.wantLines, logs)
			}
			for _, rec := range lines {
				want := map[string]any{"msg": "request", "request_id": id, "route": "/items/{id}", "path": "/items/42",
					"method": "GET", "status": 200.0, "service": "rating", "instance_id": "rating-test"}
				for k, v := range want {
					if rec[k] != v {
						t.Errorf("access log %s = %v, want %v", k, rec[k], v)
					}
				}
				if _, ok := rec["duration_ms"].(float64); !ok {
					t.Errorf("access log has no numeric duration_ms: %v", rec)
				}
			}
		})
	}
}
