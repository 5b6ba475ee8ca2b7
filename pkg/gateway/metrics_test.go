package gateway

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"
	"github.com/prometheus/client_golang/prometheus"

	"movieexample.com/internal/devconsul"
	"movieexample.com/internal/metricstest"
	metadatahttp "movieexample.com/metadata/httpapi"
	"movieexample.com/pkg/discovery"
	"movieexample.com/pkg/identity"
	"movieexample.com/pkg/web"
	"movieexample.com/rating"
	ratinghttp "movieexample.com/rating/httpapi"
)

// upstreams are movie's two upstreams, as movie builds them: one Metrics,
// each Upstream over its service's own HTTP client and a discovery.Instancer.
type upstreams struct {
	metadata, rating *Upstream
}

// consulGateway returns the metadata and rating upstreams discovering their
// instances in a real Consul dev agent, the registry to add and remove
// instances with, and the Prometheus registry holding the upstreams' metrics.
func consulGateway(t *testing.T) (upstreams, *discovery.Consul, *prometheus.Registry) {
	t.Helper()
	agent := devconsul.New(t)
	client, err := agent.Client("")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	dm := discovery.NewMetrics(reg)
	logger := quietLogger()
	rt := web.NewTransport()
	watch := func(name string, factory sd.Factory, cfg Config) *Upstream {
		u := New(name, factory, cfg, m, logger)
		in := discovery.NewInstancer(ctx, client, name, discovery.DefaultGrace, logger, dm)
		u.Watch(in)
		t.Cleanup(func() {
			// Stop leaves the instancer to its creator.
			u.Stop()
			in.Stop()
		})
		return u
	}
	ratingCfg := DefaultConfig()
	ratingCfg.FailFast = true // as movie has it
	ups := upstreams{
		metadata: watch("metadata", metadatahttp.NewFactory(rt), DefaultConfig()),
		rating:   watch("rating", ratinghttp.NewFactory(rt), ratingCfg),
	}
	return ups, discovery.NewConsul(client), reg
}

// registerAt serves h as a new instance of service, saying so in its
// identity header, and registers it.
func registerAt(t *testing.T, r *discovery.Consul, service string, h http.HandlerFunc) discovery.Instance {
	t.Helper()
	id := discovery.NewInstanceID(service)
	srv := httptest.NewServer(identity.Middleware(identity.Of(service, id), h))
	t.Cleanup(srv.Close)
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	inst := discovery.Instance{ID: id, Service: service, Host: host, Port: p}
	if err := r.Register(context.Background(), inst, time.Minute, time.Minute); err != nil {
		t.Fatal(err)
	}
	return inst
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within 30s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestInstancesGaugeFollowsConsul(t *testing.T) {
	ups, consul, reg := consulGateway(t)
	instances := func(target string) float64 {
		v, ok := metricstest.Gather(t, reg).Value("movieapp_gateway_upstream_instances", map[string]string{"target": target})
		if !ok {
			t.Fatalf("no movieapp_gateway_upstream_instances{target=%q}", target)
		}
		return v
	}
	ok := func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"id":"1","title":"t"}`) }

	if n := instances("metadata"); n != 0 {
		t.Fatalf("instances{metadata} = %v with none registered, want 0", n)
	}
	a := registerAt(t, consul, "metadata", ok)
	eventually(t, "instances{metadata} == 1 after one joined", func() bool { return instances("metadata") == 1 })
	b := registerAt(t, consul, "metadata", ok)
	eventually(t, "instances{metadata} == 2 after a second joined", func() bool { return instances("metadata") == 2 })
	if n := instances("rating"); n != 0 {
		t.Errorf("instances{rating} = %v, want 0: none registered", n)
	}
	if err := ups.rating.Ready(); err == nil {
		t.Error("rating Ready() = nil with no rating instance")
	}
	if err := ups.metadata.Ready(); err != nil {
		t.Errorf("metadata Ready() = %v with two metadata instances", err)
	}

	if err := consul.Deregister(context.Background(), a.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "instances{metadata} == 1 after one left", func() bool { return instances("metadata") == 1 })
	if err := consul.Deregister(context.Background(), b.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "instances{metadata} == 0 after both left", func() bool { return instances("metadata") == 0 })
}

func TestUpstreamCallMetrics(t *testing.T) {
	ups, consul, reg := consulGateway(t)
	meta := metadatahttp.NewClient(ups.metadata.Endpoint())
	rate := ratinghttp.NewClient(ups.rating.Endpoint())
	registerAt(t, consul, "metadata", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("id") {
		case "missing":
			http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
		case "garbled":
			io.WriteString(w, `{"id":`)
		default:
			io.WriteString(w, `{"id":"1","title":"t"}`)
		}
	})
	// The second instance always fails: calls that land on it are
	// retried on the first.
	registerAt(t, consul, "metadata", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusInternalServerError)
	})
	eventually(t, "both metadata instances discovered", func() bool { return ups.metadata.instances.Load() == 2 })

	ctx := context.Background()
	const calls = 20
	for range calls {
		if _, err := meta.Get(ctx, "1"); err != nil {
			t.Fatalf("metadata Get: %v (one healthy instance should always answer)", err)
		}
	}
	meta.Get(ctx, "missing")
	meta.Get(ctx, "garbled")
	rate.Get(ctx, rating.Key{Type: rating.RecordTypeMovie, ID: "1"}) // no rating instance at all

	m := metricstest.Gather(t, reg)
	value := func(name, target, outcome string) float64 {
		v, _ := m.Value(name, map[string]string{"target": target, "outcome": outcome})
		return v
	}
	// Calls, whatever their retries: "missing" may be answered by the
	// healthy instance at once (404) or after a retry; either way it is one
	// not_found call. Requests, one per attempt: each call got exactly one
	// answer from the healthy instance, and the failing one's 500s are
	// requests too; the rating call found no instance to send one to.
	const callsTotal, requests = "movieapp_gateway_upstream_calls_total", "movieapp_gateway_upstream_requests_total"
	for _, tt := range []struct {
		metric, target, outcome string
		want                    float64
	}{
		{callsTotal, "metadata", "ok", calls},
		{callsTotal, "metadata", "not_found", 1},
		{callsTotal, "metadata", "bad_response", 1},
		{callsTotal, "rating", "unavailable", 1},
		{callsTotal, "rating", "ok", 0},
		{requests, "metadata", "ok", calls},
		{requests, "metadata", "not_found", 1},
		{requests, "metadata", "bad_response", 1},
		{requests, "rating", "unavailable", 0},
	} {
		if got := value(tt.metric, tt.target, tt.outcome); got != tt.want {
			t.Errorf("%s{%s,%s} = %v, want %v", tt.metric, tt.target, tt.outcome, got, tt.want)
		}
	}
	if got := value(requests, "metadata", "unavailable"); got < 1 {
		t.Errorf("upstream_requests_total{metadata,unavailable} = %v, want at least 1: the failing instance's answers", got)
	}
	if got, _ := m.Value("movieapp_gateway_upstream_call_duration_seconds", map[string]string{"target": "metadata"}); got != calls+2 {
		t.Errorf("duration observations for metadata = %v, want %v (one per call, retries included)", got, calls+2)
	}
	// With one of two instances failing, about half the calls hit it first
	// and were retried; none at all would mean retries are not counted.
	if got, _ := m.Value("movieapp_gateway_upstream_retries_total", map[string]string{"target": "metadata"}); got < 1 {
		t.Errorf("upstream_retries_total{metadata} = %v, want at least 1", got)
	}
	if problems := m.Lint(t, "movieapp_"); len(problems) > 0 {
		t.Errorf("promlint: %v", problems)
	}
}
