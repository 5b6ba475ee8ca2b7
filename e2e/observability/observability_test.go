// Package observability checks what an operator sees of movieapp, end to end,
// with the real binaries (built with the race detector), a real Consul dev
// agent and a real Prometheus server, all on loopback: one request ID in the
// logs of every service a /movie call crosses, errors logged once where they
// are handled, and Prometheus finding, scraping and dropping instances
// through Consul with the project's own scrape configuration.
package observability

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"movieexample.com/internal/cluster"
	"movieexample.com/internal/devconsul"
	"movieexample.com/pkg/requestid"
)

var binDir string // the binaries built by TestMain

func TestMain(m *testing.M) { cluster.TestMain(m, &binDir) }

// start runs one service instance for the test, stopped at cleanup.
func start(t *testing.T, agent *devconsul.Agent, service string, extra ...string) *cluster.Process {
	t.Helper()
	return cluster.StartForTest(t, binDir, service, agent.Addr, nil, extra...)
}

var client = &http.Client{Timeout: 10 * time.Second}

// get sends GET url with the request ID id (none if empty) and returns the
// status and the response's request ID.
func get(t *testing.T, url, id string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if id != "" {
		req.Header.Set(requestid.Header, id)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get(requestid.Header)
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %s", what, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func ready(addr string) bool {
	resp, err := client.Get("http://" + addr + "/ready")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// logLine is one JSON log line, with the fields the tests look at.
type logLine struct {
	raw        string
	Level      string `json:"level"`
	Msg        string `json:"msg"`
	Service    string `json:"service"`
	InstanceID string `json:"instance_id"`
	RequestID  string `json:"request_id"`
	Route      string `json:"route"`
	Status     int    `json:"status"`
	Err        string `json:"err"`
}

// linesFor returns the lines p logged with request ID id.
func linesFor(t *testing.T, p *cluster.Process, id string) []logLine {
	t.Helper()
	var out []logLine
	for _, raw := range strings.Split(p.Logs(), "\n") {
		if !strings.Contains(raw, id) {
			continue
		}
		var l logLine
		if err := json.Unmarshal([]byte(raw), &l); err != nil {
			t.Fatalf("%s logged a line that is not JSON: %q", p.Service, raw)
		}
		if l.RequestID == id {
			l.raw = raw
			out = append(out, l)
		}
	}
	return out
}

func TestOneRequestIDAcrossTheThreeServices(t *testing.T) {
	agent := devconsul.New(t)
	md := start(t, agent, "metadata", "-access-log")
	rt := start(t, agent, "rating", "-access-log")
	mv := start(t, agent, "movie", "-access-log")
	waitFor(t, 30*time.Second, "movie ready", func() bool { return ready(mv.Addr) })

	// A call without an ID gets a generated one, which movie passes on.
	status, id := get(t, "http://"+mv.Addr+"/movie?id=1", "")
	if status != http.StatusOK || id == "" {
		t.Fatalf("GET /movie?id=1 = %d with request ID %q; want 200 and an ID", status, id)
	}
	for _, tt := range []struct {
		p     *cluster.Process
		route string
	}{{mv, "/movie"}, {md, "/metadata"}, {rt, "/rating"}} {
		var lines []logLine
		waitFor(t, 10*time.Second, tt.p.Service+" logs the request", func() bool {
			lines = linesFor(t, tt.p, id)
			return len(lines) > 0
		})
		// One call, one access line per service, and nothing else: a
		// request that succeeds logs no error anywhere.
		if len(lines) != 1 {
			t.Fatalf("%s logged %d lines with request_id %s, want 1", tt.p.Service, len(lines), id)
		}
		l := lines[0]
		if l.Msg != "request" || l.Route != tt.route || l.Status != http.StatusOK ||
			l.Service != tt.p.Service || l.InstanceID != tt.p.InstanceID {
			t.Errorf("%s access line %s: want route %s, status 200, service and instance ID %s", tt.p.Service, l.raw, tt.route, tt.p.InstanceID)
		}
		t.Logf("%s", l.raw)
	}

	// Rating stopped: movie answers with the metadata alone and logs the
	// cause once, as a warning, under the caller's request ID.
	if code, err := rt.Stop(); code != 0 || err != nil {
		t.Fatalf("rating stop: exit %d, %v", code, err)
	}
	waitFor(t, 30*time.Second, "movie not ready without rating", func() bool { return !ready(mv.Addr) })
	if status, _ := get(t, "http://"+mv.Addr+"/movie?id=1", "degraded-1"); status != http.StatusOK {
		t.Fatalf("GET /movie without rating = %d, want 200 (partial)", status)
	}
	waitFor(t, 10*time.Second, "movie logs the degraded request", func() bool { return len(linesFor(t, mv, "degraded-1")) == 2 })
	var warnings []logLine
	for _, l := range linesFor(t, mv, "degraded-1") {
		if l.Msg != "request" {
			warnings = append(warnings, l)
		}
	}
	if len(warnings) != 1 || warnings[0].Level != "WARN" || !strings.Contains(warnings[0].Err, "no rating instance") {
		t.Errorf("movie's lines about the degraded call besides its access line: %v; want one WARN with the cause", warnings)
	}

	// Metadata stopped too: a 503, whose cause movie logs once, as an error.
	if code, err := md.Stop(); code != 0 || err != nil {
		t.Fatalf("metadata stop: exit %d, %v", code, err)
	}
	waitFor(t, 30*time.Second, "movie sees no metadata instance", func() bool {
		status, _ := get(t, "http://"+mv.Addr+"/movie?id=1", "probe")
		return status == http.StatusServiceUnavailable
	})
	if status, _ := get(t, "http://"+mv.Addr+"/movie?id=1", "failed-1"); status != http.StatusServiceUnavailable {
		t.Fatalf("GET /movie without metadata = %d, want 503", status)
	}
	waitFor(t, 10*time.Second, "movie logs the failed request", func() bool { return len(linesFor(t, mv, "failed-1")) == 3 })
	levels := map[string]int{}
	for _, l := range linesFor(t, mv, "failed-1") {
		levels[l.Level]++
		if l.Level == "ERROR" && (l.Msg != "request failed" || !strings.Contains(l.Err, "no metadata instance")) {
			t.Errorf("error line %s: want the cause, no metadata instance", l.raw)
		}
	}
	// The access line, the rating warning (rating is still gone) and one
	// error: not one per layer the error went through.
	if levels["INFO"] != 1 || levels["WARN"] != 1 || levels["ERROR"] != 1 {
		t.Errorf("movie's lines about the failed call by level: %v; want one INFO, one WARN, one ERROR", levels)
	}
}
