package instance

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"movieexample.com/internal/devconsul"
	"movieexample.com/pkg/discovery"
	"movieexample.com/pkg/identity"
	"movieexample.com/pkg/ops"
	"movieexample.com/pkg/web"
)

// TestListenAdvertises checks the address Run registers for the listener it
// binds: -advertise-addr when given, else -host when it names one
// interface, else a reachable IPv4 address of the host.
func TestListenAdvertises(t *testing.T) {
	tests := []struct {
		name      string
		host      string
		advertise string
		wantHost  string // "" means any reachable IPv4
		wantPort  int    // 0 means the port bound
	}{
		{name: "advertise-addr host", advertise: "10.1.2.3", wantHost: "10.1.2.3"},
		{name: "advertise-addr host:port", advertise: "10.1.2.3:9999", wantHost: "10.1.2.3", wantPort: 9999},
		{name: "listen host", host: "127.0.0.1", wantHost: "127.0.0.1"},
		{name: "localhost becomes an address", host: "localhost", wantHost: "127.0.0.1"},
		{name: "all interfaces: first IPv4", host: "0.0.0.0"},
		{name: "no host: first IPv4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Service: "rating", InstanceID: "rating-x", Host: tt.host, AdvertiseAddr: tt.advertise}
			ln, inst, err := listen(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			wantPort := tt.wantPort
			if wantPort == 0 {
				wantPort = ln.Addr().(*net.TCPAddr).Port
			}
			if tt.wantHost != "" && inst.Host != tt.wantHost {
				t.Errorf("host = %q, want %q", inst.Host, tt.wantHost)
			}
			if ip := net.ParseIP(inst.Host); ip == nil || ip.To4() == nil || ip.IsUnspecified() {
				t.Errorf("host = %q, want a reachable IPv4 address", inst.Host)
			}
			if inst.Port != wantPort {
				t.Errorf("port = %d, want %d", inst.Port, wantPort)
			}
			if inst.ID != "rating-x" || inst.Service != "rating" {
				t.Errorf("instance = %+v, want ID rating-x of service rating", inst)
			}
		})
	}
}

func TestListenRefusesUnreachableAdvertiseAddr(t *testing.T) {
	tests := []struct {
		name, advertise, wantInErr string
	}{
		{"localhost", "localhost", "not reachable"},
		{"unspecified", "0.0.0.0:80", "not reachable"},
		{"bad port", "10.1.2.3:http", "bad port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port := freePort(t)
			ln, _, err := listen(Config{Service: "rating", Host: "127.0.0.1", Port: port, AdvertiseAddr: tt.advertise})
			if err == nil {
				ln.Close()
				t.Fatalf("listen with -advertise-addr %q: want an error", tt.advertise)
			}
			if !strings.Contains(err.Error(), tt.wantInErr) {
				t.Errorf("listen: err = %q, want it to contain %q", err, tt.wantInErr)
			}
			// The port bound before the address was refused is released.
			again, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if err != nil {
				t.Fatalf("port %d still held after listen failed: %v", port, err)
			}
			again.Close()
		})
	}
}

// freePort returns a loopback port nothing listens on.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// configLog is what a binary passes Setup to log: its whole configuration.
type configLog struct{ Config }

func (c configLog) LogValue() slog.Value { return slog.GroupValue(c.Attrs()...) }

// parseConfig parses args as a binary would, for service, with no
// environment.
func parseConfig(t *testing.T, service string, args ...string) Config {
	t.Helper()
	cfg := DefaultConfig(service, 0)
	fs := cfg.FlagSet(io.Discard)
	if err := cfg.Parse(fs, args, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// runTestServer runs an App with a GET /hello route on a free loopback
// port, registered in agent, and returns its config and address once Consul
// lists it as passing.
func runTestServer(t *testing.T, agent *devconsul.Agent) (cfg Config, addr string, stop func() error) {
	t.Helper()
	mux := web.NewMux()
	mux.Handle("/hello", web.Methods{http.MethodGet: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"hello":"world"}`)
	})})
	mux.Handle("/panic", web.Methods{http.MethodGet: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic("a bug")
	})})
	r := runApp(t, agent, mux, "-drain", "50ms")
	return r.cfg, r.addr, r.stop
}

// testRun is a Run that runApp started.
type testRun struct {
	cfg  Config
	addr string
	logs *syncBuffer // the instance's JSON log
	// stop cancels Run's context and returns what Run returned.
	stop func() error
}

// runApp runs an App serving routes on a free loopback port, with args
// added to the flags, registered in agent, and returns once Consul lists it
// as passing. The log is shown if the test fails.
func runApp(t *testing.T, agent *devconsul.Agent, routes *http.ServeMux, args ...string) *testRun {
	t.Helper()
	args = append([]string{"-host", "127.0.0.1", "-port", "0", "-log-format", "json", "-consul-addr", agent.Addr}, args...)
	r := &testRun{cfg: parseConfig(t, "rating", args...), logs: &syncBuffer{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("instance log:\n%s", r.logs)
		}
	})
	logger, err := Logger(r.cfg, configLog{r.cfg}, r.logs)
	if err != nil {
		t.Fatal(err)
	}
	client, err := discovery.NewClient(r.cfg.ConsulAddr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, App{
			Config:   r.cfg,
			Logger:   logger,
			Routes:   routes,
			Metrics:  ops.NewRegistry(),
			Registry: discovery.NewConsul(client),
		})
	}()
	// stop may be called from a goroutine of the test and from the cleanup.
	var once sync.Once
	var runErr error
	r.stop = func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { r.stop() })

	deadline := time.Now().Add(15 * time.Second)
	for {
		if e := consulEntry(t, client, r.cfg.Service, r.cfg.InstanceID, true); e != nil {
			r.addr = net.JoinHostPort(e.Service.Address, strconv.Itoa(e.Service.Port))
			return r
		}
		select {
		case err := <-done:
			once.Do(func() { cancel(); runErr = err })
			t.Fatalf("Run returned before registering: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("instance not passing in Consul within 15s")
		}
	}
}

// consulEntry returns Consul's entry for the instance id of service, passing
// only if passingOnly, or nil if Consul lists none.
func consulEntry(t *testing.T, client *consul.Client, service, id string, passingOnly bool) *consul.ServiceEntry {
	t.Helper()
	entries, _, err := client.Health().Service(service, "", passingOnly, nil)
	if err != nil {
		t.Fatalf("ask Consul for %s: %v", service, err)
	}
	for _, e := range entries {
		if e.Service.ID == id {
			return e
		}
	}
	return nil
}

func get(t *testing.T, method, url string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body)
}

func TestRunServesRegistersAndDeregisters(t *testing.T) {
	agent := devconsul.New(t)
	client, err := agent.Client("")
	if err != nil {
		t.Fatal(err)
	}
	cfg, addr, stop := runTestServer(t, agent)
	base := "http://" + addr

	tests := []struct {
		method, path string
		wantStatus   int
		wantInBody   string
	}{
		{"GET", "/hello", 200, `"hello"`},
		{"GET", "/health", 200, `"status":"ok"`},
		{"GET", "/ready", 200, `"status":"ready"`},
		{"GET", "/metrics", 200, `movieapp_build_info{goversion=`},
		{"POST", "/health", 405, `"error"`},
		{"GET", "/no/such/path", 404, `"error"`},
		{"GET", "/panic", 500, `"error"`},
	}
	// Every answer, an error or not, says which instance gave it: a caller
	// trusts none that does not.
	self := identity.Of(cfg.Service, cfg.InstanceID)
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			status, header, body := get(t, tt.method, base+tt.path)
			if status != tt.wantStatus || !strings.Contains(body, tt.wantInBody) {
				t.Errorf("%s %s = %d %s; want %d containing %s", tt.method, tt.path, status, body, tt.wantStatus, tt.wantInBody)
			}
			if header.Get("X-Request-ID") == "" {
				t.Error("no X-Request-ID in the response")
			}
			if got := header.Values(identity.Header); len(got) != 1 || got[0] != self {
				t.Errorf("%s = %q, want %q", identity.Header, got, self)
			}
		})
	}

	t.Run("Consul entry carries the identity", func(t *testing.T) {
		e := consulEntry(t, client, cfg.Service, cfg.InstanceID, true)
		if e == nil || e.Service.Meta[identity.MetaKey] != self {
			t.Errorf("Consul entry %+v, want meta %s=%s", e, identity.MetaKey, self)
		}
	})

	t.Run("route label is the pattern, not the path", func(t *testing.T) {
		_, _, body := get(t, "GET", base+"/metrics")
		if !strings.Contains(body, `route="unmatched"`) || strings.Contains(body, "/no/such/path") {
			t.Errorf("an unknown path must be counted as route=\"unmatched\", never by its raw path")
		}
	})

	t.Run("healthcheck probe", func(t *testing.T) {
		_, port, _ := net.SplitHostPort(addr)
		p, _ := strconv.Atoi(port)
		if err := ops.Probe(context.Background(), p); err != nil {
			t.Errorf("Probe of a ready instance: %v", err)
		}
	})

	if err := stop(); err != nil {
		t.Fatalf("Run returned %v after a clean shutdown", err)
	}
	// Deregistering goes through the agent, which forgets the instance
	// before answering: no entry at all, passing or not, is left.
	if e := consulEntry(t, client, cfg.Service, cfg.InstanceID, false); e != nil {
		t.Errorf("after shutdown: Consul still lists %s (checks %v), want it deregistered", cfg.InstanceID, e.Checks)
	}
	if _, err := http.Get(base + "/health"); err == nil {
		t.Error("still serving after Run returned")
	}
}

func TestRunFailsClearlyWithoutConsul(t *testing.T) {
	dead := "127.0.0.1:" + strconv.Itoa(freePort(t))
	cfg := parseConfig(t, "rating", "-host", "127.0.0.1", "-port", "0", "-consul-addr", dead, "-start-timeout", "500ms")
	logger, err := Logger(cfg, configLog{cfg}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	client, err := discovery.NewClient(cfg.ConsulAddr)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- Run(context.Background(), App{Config: cfg, Logger: logger, Registry: discovery.NewConsul(client),
			Routes: web.NewMux(), Metrics: ops.NewRegistry()})
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), dead) {
			t.Errorf("Run with no Consul: err = %v, want an error naming %s", err, dead)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run with no Consul and a 500ms start timeout still running after 30s")
	}
}
