package instance

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"movieexample.com/internal/devconsul"
	"movieexample.com/internal/metricstest"
	"movieexample.com/pkg/identity"
	"movieexample.com/pkg/web"
)

// heldRoutes is a service whose GET /work holds every request until
// release is closed, saying on entered when one has arrived, and whose
// /panic panics.
func heldRoutes() (mux *http.ServeMux, entered chan struct{}, release chan struct{}) {
	entered, release = make(chan struct{}, 64), make(chan struct{})
	mux = web.NewMux()
	mux.Handle("/work", web.Methods{http.MethodGet: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		io.WriteString(w, `{}`)
	})})
	mux.Handle("/panic", web.Methods{http.MethodGet: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic("a bug")
	})})
	return mux, entered, release
}

// hold sends n GET /work to addr and returns once all n are in the
// handler; wait waits for their answers and returns their statuses.
func hold(t *testing.T, addr string, n int, entered <-chan struct{}) (wait func() []int) {
	t.Helper()
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			resp, err := http.Get("http://" + addr + "/work")
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes[i] = resp.StatusCode
		})
	}
	for range n {
		<-entered
	}
	return func() []int { wg.Wait(); return codes }
}

func TestMaxInFlightShedsTheExcessAtOnce(t *testing.T) {
	agent := devconsul.New(t)
	mux, entered, release := heldRoutes()
	const limit = 3
	r := runApp(t, agent, mux, "-max-inflight", "3")
	base := "http://" + r.addr

	wait := hold(t, r.addr, limit, entered)
	// The limit's worth of requests is held in the handler: the next one
	// is answered while they still are, so it was not queued behind them.
	status, header, body := get(t, http.MethodGet, base+"/work")
	if status != http.StatusServiceUnavailable {
		t.Fatalf("request %d: status %d, want 503", limit+1, status)
	}
	if got := header.Get("Retry-After"); got != web.RetryAfter {
		t.Errorf("Retry-After = %q, want %q", got, web.RetryAfter)
	}
	if got, want := header.Get(identity.Header), identity.Of(r.cfg.Service, r.cfg.InstanceID); got != want {
		t.Errorf("%s = %q, want %q: a gateway must know which instance shed", identity.Header, got, want)
	}
	var eb web.ErrorBody
	if err := json.Unmarshal([]byte(body), &eb); err != nil || eb.Error != web.MsgOverloaded {
		t.Errorf("body %q: want the JSON error shape with %q (%v)", body, web.MsgOverloaded, err)
	}
	// The operational routes are never shed, and shedding is not
	// unreadiness.
	for _, path := range []string{"/health", "/ready", "/metrics"} {
		if status, _, body := get(t, http.MethodGet, base+path); status != http.StatusOK {
			t.Errorf("GET %s while shedding: %d %s, want 200", path, status, body)
		}
	}
	m := metricstest.Scrape(t, base+"/metrics")
	if got, _ := m.Value("movieapp_http_shed_requests_total", nil); got != 1 {
		t.Errorf("movieapp_http_shed_requests_total = %v, want 1", got)
	}
	if got, _ := m.Value("movieapp_http_requests_total", map[string]string{"route": "/work", "method": "GET", "code": "503"}); got != 1 {
		t.Errorf(`movieapp_http_requests_total{route="/work",code="503"} = %v, want 1: the shed request, under its route`, got)
	}
	if got, _ := m.Value("movieapp_http_max_inflight_requests", nil); got != limit {
		t.Errorf("movieapp_http_max_inflight_requests = %v, want %d", got, limit)
	}
	if problems := m.Lint(t, "movieapp_http_"); len(problems) > 0 {
		t.Errorf("promlint: %v", problems)
	}

	close(release)
	for i, code := range wait() {
		if code != http.StatusOK {
			t.Errorf("held request %d: status %d, want 200", i, code)
		}
	}
	// The held requests gave their places back; so does one that panics.
	for range limit + 1 {
		if status, _, _ := get(t, http.MethodGet, base+"/panic"); status != http.StatusInternalServerError {
			t.Fatalf("GET /panic: %d, want 500", status)
		}
	}
	for i := range limit + 1 {
		if status, _, body := get(t, http.MethodGet, base+"/work"); status != http.StatusOK {
			t.Fatalf("request %d after the others ended: %d %s, want 200", i, status, body)
		}
	}
}

func TestMaxInFlightZeroAdmitsAll(t *testing.T) {
	mux, entered, release := heldRoutes()
	srv := strings.TrimPrefix(serveStack(t, mux, false, testLogger(t, nil)).URL, "http://") // MaxInFlight 0
	// Far more than any limit a test would set, all in the handler at once.
	wait := hold(t, srv, 20, entered)
	close(release)
	for i, code := range wait() {
		if code != http.StatusOK {
			t.Errorf("request %d: status %d, want 200", i, code)
		}
	}
	m := metricstest.Scrape(t, "http://"+srv+"/metrics")
	if got, ok := m.Value("movieapp_http_shed_requests_total", nil); !ok || got != 0 {
		t.Errorf("movieapp_http_shed_requests_total = %v (present %v), want 0: the series exists without a limit", got, ok)
	}
}
