package observability

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"movieexample.com/internal/cluster"
	"movieexample.com/internal/devconsul"
	"movieexample.com/internal/metricstest"
	"movieexample.com/internal/toolbin"
)

// errNoPrometheus means the Prometheus binary was not found. The test fails
// on it rather than skipping: a scrape configuration never run is no test.
var errNoPrometheus = errors.New("prometheus binary not found: run `make prometheus-bin` (or set PROMETHEUS_BIN)")

// repoRoot is the top of the repository.
func repoRoot() string { return toolbin.Root() }

// prometheusBinary returns $PROMETHEUS_BIN, else bin/prometheus.
func prometheusBinary() (string, error) {
	return toolbin.Find("PROMETHEUS_BIN", "prometheus", errNoPrometheus)
}

// scrapeConfig returns the project's prometheus/prometheus.yml with only the
// Consul address and the intervals changed, so the test runs what compose
// runs. Each is replaced exactly once: if the file changes shape, this fails
// instead of silently testing something else.
func scrapeConfig(t *testing.T, consulAddr string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(), "prometheus", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(b)
	for _, r := range []struct{ old, new string }{
		{"server: consul:8500", "server: " + consulAddr},
		{"scrape_interval: 5s", "scrape_interval: 1s"},
		{"refresh_interval: 5s", "refresh_interval: 1s"},
	} {
		if n := strings.Count(cfg, r.old); n != 1 {
			t.Fatalf("prometheus/prometheus.yml has %q %d times, want once: update this test with the file", r.old, n)
		}
		cfg = strings.Replace(cfg, r.old, r.new, 1)
	}
	path := filepath.Join(t.TempDir(), "prometheus.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// prometheus is a running Prometheus server.
type prometheus struct {
	base string // http://127.0.0.1:port
}

// startPrometheus runs the Prometheus binary with config on a free loopback
// port until the test ends, and waits until it is ready.
func startPrometheus(t *testing.T, config string) *prometheus {
	t.Helper()
	bin, err := prometheusBinary()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	logs := &lockedBuffer{}
	cmd := exec.Command(bin,
		"--config.file="+config,
		"--storage.tsdb.path="+t.TempDir(),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("prometheus logs:\n%s", logs)
		}
	})
	p := &prometheus{base: "http://" + addr}
	waitFor(t, 60*time.Second, "prometheus ready", func() bool {
		select {
		case <-exited:
			t.Fatalf("prometheus exited at start:\n%s", logs)
		default:
		}
		resp, err := client.Get(p.base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// target is one of Prometheus's active targets.
type target struct {
	Labels    map[string]string `json:"labels"`
	Health    string            `json:"health"`
	LastError string            `json:"lastError"`
	ScrapeURL string            `json:"scrapeUrl"`
}

// targets returns the active targets by instance ID.
func (p *prometheus) targets(t *testing.T) map[string]target {
	t.Helper()
	var body struct {
		Data struct {
			ActiveTargets []target `json:"activeTargets"`
		} `json:"data"`
	}
	p.api(t, "/api/v1/targets?state=active", &body)
	out := map[string]target{}
	for _, tg := range body.Data.ActiveTargets {
		out[tg.Labels["instance_id"]] = tg
	}
	return out
}

// query runs an instant PromQL query.
func (p *prometheus) query(t *testing.T, q string) []metricstest.Sample {
	t.Helper()
	out, err := metricstest.Query(p.base, q)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// byInstance returns query's result as a map from instance_id to value.
func (p *prometheus) byInstance(t *testing.T, q string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, s := range p.query(t, q) {
		out[s.Metric["instance_id"]] = s.Value
	}
	return out
}

func (p *prometheus) api(t *testing.T, path string, v any) {
	t.Helper()
	resp, err := client.Get(p.base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

func TestPrometheusScrapesEveryInstanceThroughConsul(t *testing.T) {
	if _, err := prometheusBinary(); err != nil {
		t.Fatal(err) // before starting anything: say at once what is missing
	}
	agent := devconsul.New(t)
	procs := map[string]*cluster.Process{}
	for _, s := range []string{"metadata", "metadata", "rating", "rating", "movie"} {
		p := start(t, agent, s)
		procs[p.InstanceID] = p
	}
	prom := startPrometheus(t, scrapeConfig(t, agent.Addr))

	// Every instance becomes a target, labelled from its registration,
	// and is scraped successfully; nothing else is a target.
	waitFor(t, 60*time.Second, "every instance a target with up == 1", func() bool {
		up := prom.byInstance(t, "up")
		for id := range procs {
			if up[id] != 1 {
				return false
			}
		}
		return len(up) == len(procs)
	})
	for id, tg := range prom.targets(t) {
		p := procs[id]
		switch {
		case p == nil:
			t.Errorf("target %v is no instance of ours", tg.Labels)
		case tg.Labels["service"] != p.Service || tg.Labels["instance"] != p.Addr || tg.Labels["job"] != "movieapp":
			t.Errorf("target %s labels %v: want service=%s instance=%s job=movieapp", id, tg.Labels, p.Service, p.Addr)
		case tg.Health != "up" || tg.ScrapeURL != "http://"+p.Addr+"/metrics":
			t.Errorf("target %s: health %s (%s), scrape URL %s", id, tg.Health, tg.LastError, tg.ScrapeURL)
		}
	}
	// The services' metrics carry no service label of their own, so the
	// target's is never renamed exported_service.
	if s := prom.query(t, `count({exported_service!=""})`); len(s) != 0 {
		t.Errorf("series with exported_service: %v; a scraped service label collides with the target label", s)
	}
	if n := len(prom.query(t, `movieapp_build_info == 1`)); n != len(procs) {
		t.Errorf("movieapp_build_info: %d series, want one per instance (%d)", n, len(procs))
	}

	// Traffic moves the counters: movie's by the number of calls, and
	// every rating instance's, as movie spreads its calls.
	var movie *cluster.Process
	for _, p := range procs {
		if p.Service == "movie" {
			movie = p
		}
	}
	waitFor(t, 30*time.Second, "movie ready", func() bool { return ready(movie.Addr) })
	const calls = 40
	served := `sum by (instance_id) (movieapp_http_requests_total{service="%s",route="/%s",code="200"})`
	before := prom.byInstance(t, fmt.Sprintf(served, "movie", "movie"))[movie.InstanceID]
	for range calls {
		if status, _ := get(t, "http://"+movie.Addr+"/movie?id=1", ""); status != http.StatusOK {
			t.Fatalf("GET /movie = %d", status)
		}
	}
	waitFor(t, 30*time.Second, fmt.Sprintf("movie's /movie counter up by %d in Prometheus", calls), func() bool {
		return prom.byInstance(t, fmt.Sprintf(served, "movie", "movie"))[movie.InstanceID] >= before+calls
	})
	waitFor(t, 30*time.Second, "both rating instances' /rating counters above 0", func() bool {
		return len(prom.byInstance(t, fmt.Sprintf(served, "rating", "rating")+" > 0")) == 2
	})
	waitFor(t, 30*time.Second, "movie's discovered upstream instances in Prometheus: 2 metadata + 2 rating", func() bool {
		got := prom.query(t, `sum(movieapp_gateway_upstream_instances{service="movie"})`)
		return len(got) == 1 && got[0].Value == 4
	})

	// A new instance (what --scale adds) is found with no file edited,
	// labelled with the version it registered (a canary's -meta)...
	extra := start(t, agent, "rating", "-meta", "version=v2")
	waitFor(t, 60*time.Second, "the new rating instance a target with up == 1", func() bool {
		return prom.byInstance(t, "up")[extra.InstanceID] == 1
	})
	for id, tg := range prom.targets(t) {
		want := ""
		if id == extra.InstanceID {
			want = "v2"
		}
		if got := tg.Labels["version"]; got != want {
			t.Errorf("target %s: version label %q, want %q (from its Consul metadata)", id, got, want)
		}
	}
	// ...and one that stops deregisters and leaves the targets.
	if code, err := extra.Stop(); code != 0 || err != nil {
		t.Fatalf("stop rating: exit %d, %v", code, err)
	}
	waitFor(t, 60*time.Second, "the stopped instance gone from the targets", func() bool {
		_, ok := prom.targets(t)[extra.InstanceID]
		return !ok
	})
	if got := len(prom.targets(t)); got != len(procs) {
		t.Errorf("%d targets after the extra instance left, want %d", got, len(procs))
	}
}

// lockedBuffer collects a child process's output for the test log.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
