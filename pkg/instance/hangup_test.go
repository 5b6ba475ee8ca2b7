package instance

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"

	"movieexample.com/internal/metricstest"
	"movieexample.com/pkg/errs"
	"movieexample.com/pkg/gateway"
	"movieexample.com/pkg/identity"
	"movieexample.com/pkg/ops"
	"movieexample.com/pkg/requestid"
	"movieexample.com/pkg/web"
)

// heldUpstream starts an upstream instance that never answers: it announces
// each request on the channel it returns, then holds it until the caller
// abandons it.
func heldUpstream(t *testing.T) (addr string, called <-chan struct{}) {
	t.Helper()
	ch := make(chan struct{}, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ch <- struct{}{}
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host, ch
}

// upstreamRoutes returns routes with GET /upstream served as a service's
// go-kit route is: the endpoint of a real gateway.Upstream over the instance
// at addr, errors answered by web.ErrorEncoder with logger.
func upstreamRoutes(t *testing.T, addr string, cfg gateway.Config, logger *slog.Logger) *http.ServeMux {
	t.Helper()
	factory := web.GetFactory(web.NewTransport(), "/answer", func(any) string { return "" },
		web.DecodeAnswer(web.MaxAnswerBytes, errs.New(errs.NotFound, "not found"), func(struct{}) error { return nil }))
	// The gateway's own lines (discovery) are not what the test reads.
	up := gateway.New("held", factory, cfg, gateway.NewMetrics(ops.NewRegistry()), testLogger(t, nil))
	up.Watch(sd.FixedInstancer{identity.Instance("held/held-test", addr)})
	t.Cleanup(up.Stop)
	deadline := time.Now().Add(10 * time.Second)
	for up.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("upstream not ready: %v", up.Ready())
		}
		time.Sleep(time.Millisecond)
	}
	decode := func(context.Context, *http.Request) (any, error) { return struct{}{}, nil }
	mux := web.NewMux()
	mux.Handle("/upstream", web.Methods{http.MethodGet: web.NewServer(up.Endpoint(), decode, logger)})
	return mux
}

// TestClientHangUpIsNoServerError goes through Run's handler stack to a
// real gateway over an upstream that never answers. A client that goes away
// mid-request is counted as 499 and logged at info level; an upstream
// timeout, a deadline that expired inside the server, stays a 503 logged as
// an error.
func TestClientHangUpIsNoServerError(t *testing.T) {
	tests := []struct {
		name          string
		attempt       time.Duration // the gateway's attempt timeout
		clientCancels bool          // the client goes away once the upstream is called
		wantCode      string
		wantLevel     string
		wantMsg       string
	}{
		{name: "client cancels mid-request", attempt: time.Minute, clientCancels: true,
			wantCode: "499", wantLevel: "INFO", wantMsg: "client went away"},
		{name: "upstream attempt times out", attempt: 50 * time.Millisecond,
			wantCode: "503", wantLevel: "ERROR", wantMsg: "request failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, called := heldUpstream(t)
			cfg := gateway.DefaultConfig()
			cfg.AttemptTimeout, cfg.MaxAttempts = tt.attempt, 1
			logs := &syncBuffer{}
			logger := testLogger(t, logs)
			srv := serveStack(t, upstreamRoutes(t, addr, cfg, logger), false, logger)

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/upstream", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set(requestid.Header, "hangup-1")
			answered := make(chan error, 1)
			go func() {
				resp, err := srv.Client().Do(req)
				if err == nil {
					resp.Body.Close()
				}
				answered <- err
			}()
			select {
			case <-called:
			case <-time.After(10 * time.Second):
				t.Fatal("the upstream was not called within 10s")
			}
			if tt.clientCancels {
				cancel()
			}
			if err := <-answered; tt.clientCancels != (err != nil) {
				t.Fatalf("client: err = %v, want an error only if it canceled", err)
			}

			codes := waitForCodes(t, srv.URL, "/upstream")
			if len(codes) != 1 || codes[tt.wantCode] != 1 {
				t.Errorf("movieapp_http_requests_total{route=\"/upstream\"} by code = %v, want only %s once", codes, tt.wantCode)
			}
			checkOneLine(t, logs.String(), map[string]any{"level": tt.wantLevel, "msg": tt.wantMsg, "request_id": "hangup-1"})
		})
	}
}

// waitForCodes scrapes srv's /metrics until route has been counted, and
// returns its requests by code.
func waitForCodes(t *testing.T, srv, route string) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		codes := map[string]float64{}
		mf := metricstest.Scrape(t, srv+"/metrics")["movieapp_http_requests_total"]
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["route"] == route {
				codes[labels["code"]] += m.GetCounter().GetValue()
			}
		}
		if len(codes) > 0 {
			return codes
		}
		if time.Now().After(deadline) {
			t.Fatalf("route %s not counted within 10s", route)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkOneLine checks that the JSON log logs has exactly one line, with the
// fields of want.
func checkOneLine(t *testing.T, logs string, want map[string]any) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(logs), "\n")
	if len(lines) != 1 || lines[0] == "" {
		t.Fatalf("%d log lines, want 1:\n%s", len(lines), logs)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
		t.Fatalf("log line is not JSON: %q", lines[0])
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("log %s = %v, want %v (line %s)", k, got[k], v, lines[0])
		}
	}
}
