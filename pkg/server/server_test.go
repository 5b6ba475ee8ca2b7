package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"movieexample.com/pkg/discovery"
)

func TestParseEnvironmentFallback(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(Config) bool
		wantErr bool
	}{
		{name: "defaults", check: func(c Config) bool {
			return c.Port == 8082 && c.ConsulAddr == "127.0.0.1:8500" && c.Discovery.TTL == 5*time.Second &&
				c.Discovery.HeartbeatInterval == 5*time.Second/3 && c.Drain == time.Second
		}},
		{name: "env when no flag", env: map[string]string{"PORT": "9000", "CONSUL_HTTP_ADDR": "consul:8500"},
			check: func(c Config) bool { return c.Port == 9000 && c.ConsulAddr == "consul:8500" }},
		{name: "flag wins over env", args: []string{"-port", "9001"}, env: map[string]string{"PORT": "9000"},
			check: func(c Config) bool { return c.Port == 9001 }},
		{name: "heartbeat a third of the TTL", args: []string{"-ttl", "9s"},
			check: func(c Config) bool { return c.Discovery.HeartbeatInterval == 3*time.Second }},
		{name: "bad env value", env: map[string]string{"PORT": "eighty"}, wantErr: true},
		{name: "heartbeat not shorter than TTL", args: []string{"-ttl", "2s", "-heartbeat-interval", "2s"}, wantErr: true},
		{name: "reaping under Consul's minimum", args: []string{"-deregister-after", "30s"}, wantErr: true},
		{name: "unknown flag", args: []string{"-nope"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg Config
			fs := NewFlagSet("rating", 8082, &cfg)
			fs.SetOutput(io.Discard)
			err := Parse(fs, &cfg, tt.args, func(k string) string { return tt.env[k] })
			if (err != nil) != tt.wantErr {
				t.Fatalf("Parse: err = %v, want error: %v", err, tt.wantErr)
			}
			if err == nil && !tt.check(cfg) {
				t.Errorf("config %+v does not hold", cfg)
			}
		})
	}
}

func TestAdvertise(t *testing.T) {
	tests := []struct {
		name      string
		host      string
		advertise string
		wantHost  string // "" means any reachable IPv4
		wantPort  int
	}{
		{name: "advertise-addr host", advertise: "10.1.2.3", wantHost: "10.1.2.3", wantPort: 4000},
		{name: "advertise-addr host:port", advertise: "10.1.2.3:9999", wantHost: "10.1.2.3", wantPort: 9999},
		{name: "listen host", host: "127.0.0.1", wantHost: "127.0.0.1", wantPort: 4000},
		{name: "localhost becomes an address", host: "localhost", wantHost: "127.0.0.1", wantPort: 4000},
		{name: "all interfaces: first IPv4", host: "0.0.0.0", wantPort: 4000},
		{name: "no host: first IPv4", wantPort: 4000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Service: "rating", InstanceID: "rating-x", Host: tt.host, AdvertiseAddr: tt.advertise}
			inst, err := cfg.advertise(4000)
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantHost != "" && inst.Host != tt.wantHost {
				t.Errorf("host = %q, want %q", inst.Host, tt.wantHost)
			}
			if ip := net.ParseIP(inst.Host); ip == nil || ip.To4() == nil || ip.IsUnspecified() {
				t.Errorf("host = %q, want a reachable IPv4 address", inst.Host)
			}
			if inst.Port != tt.wantPort {
				t.Errorf("port = %d, want %d", inst.Port, tt.wantPort)
			}
		})
	}
	if _, err := (Config{AdvertiseAddr: "localhost"}).advertise(1); err == nil {
		t.Error("advertising localhost: want an error")
	}
}

// runTestServer runs an App on a free loopback port against an in-memory
// registry and returns its address once registered.
func runTestServer(t *testing.T, reg *discovery.Memory) (addr string, stop func() error) {
	t.Helper()
	var cfg Config
	fs := NewFlagSet("rating", 0, &cfg)
	if err := Parse(fs, &cfg, []string{"-host", "127.0.0.1", "-port", "0", "-drain", "50ms"}, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	mux := NewMux()
	mux.Handle("/hello", Methods{http.MethodGet: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"hello":"world"}`)
	})})
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, App{
			Config:   cfg,
			Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
			Routes:   mux,
			Metrics:  NewMetricsRegistry(),
			Registry: reg,
		})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		insts, err := reg.Instances(context.Background(), "rating")
		if err == nil {
			addr = insts[0].Addr()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("server did not register")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var stopped bool
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-done
	}
	t.Cleanup(func() { stop() })
	return addr, stop
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
	reg := discovery.NewMemory()
	addr, stop := runTestServer(t, reg)
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
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			status, header, body := get(t, tt.method, base+tt.path)
			if status != tt.wantStatus || !strings.Contains(body, tt.wantInBody) {
				t.Errorf("%s %s = %d %s; want %d containing %s", tt.method, tt.path, status, body, tt.wantStatus, tt.wantInBody)
			}
			if header.Get("X-Request-ID") == "" {
				t.Error("no X-Request-ID in the response")
			}
		})
	}

	t.Run("route label is the pattern, not the path", func(t *testing.T) {
		_, _, body := get(t, "GET", base+"/metrics")
		if !strings.Contains(body, `route="unmatched"`) || strings.Contains(body, "/no/such/path") {
			t.Errorf("an unknown path must be counted as route=\"unmatched\", never by its raw path")
		}
	})

	t.Run("healthcheck probe", func(t *testing.T) {
		_, port, _ := net.SplitHostPort(addr)
		p, _ := strconv.Atoi(port)
		if err := Probe(context.Background(), p); err != nil {
			t.Errorf("Probe of a ready instance: %v", err)
		}
	})

	if err := stop(); err != nil {
		t.Fatalf("Run returned %v after a clean shutdown", err)
	}
	if _, err := reg.Instances(context.Background(), "rating"); !errors.Is(err, discovery.ErrNoInstances) {
		t.Errorf("after shutdown: err = %v, want the instance deregistered", err)
	}
	if _, err := http.Get(base + "/health"); err == nil {
		t.Error("still serving after Run returned")
	}
}

func TestRunFailsClearlyWithoutConsul(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	var cfg Config
	fs := NewFlagSet("rating", 0, &cfg)
	args := []string{"-host", "127.0.0.1", "-port", "0", "-consul-addr", dead, "-start-timeout", "500ms"}
	if err := Parse(fs, &cfg, args, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	err := Run(context.Background(), App{Config: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Routes: NewMux(), Metrics: NewMetricsRegistry()})
	if err == nil || !strings.Contains(err.Error(), dead) {
		t.Errorf("Run with no Consul: err = %v, want an error naming %s", err, dead)
	}
}
