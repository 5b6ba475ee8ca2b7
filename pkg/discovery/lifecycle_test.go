package discovery

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testInstance(service string) Instance {
	return Instance{ID: NewInstanceID(service), Service: service, Host: "127.0.0.1", Port: 9999}
}

func fastConfig() Config {
	return Config{TTL: time.Second, HeartbeatInterval: 20 * time.Millisecond, DeregisterAfter: time.Minute, StartTimeout: 2 * time.Second}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %s", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNewInstanceID(t *testing.T) {
	a, b := NewInstanceID("rating"), NewInstanceID("rating")
	if a == b {
		t.Fatalf("two IDs are equal: %s", a)
	}
	if got, want := len(a), len("rating-")+36; got != want {
		t.Errorf("len(%q) = %d, want %d", a, got, want)
	}
}

// TestMemoryRegistry guards what the lifecycle tests rely on in the fake:
// it forgets an instance, on Deregister or Forget, as Consul does, and then
// answers a heartbeat with ErrNotRegistered, which is what makes a
// Registration register again.
func TestMemoryRegistry(t *testing.T) {
	m := NewMemory()
	ctx := context.Background()

	if m.listed("rating") {
		t.Fatal("an empty registry lists rating")
	}
	inst := testInstance("rating")
	if err := m.Register(ctx, inst, 5*time.Second, time.Minute); err != nil {
		t.Fatal(err)
	}
	if !m.listed("rating") {
		t.Fatal("registered instance not listed")
	}
	if m.listed("metadata") {
		t.Error("a rating instance is listed as metadata")
	}
	if err := m.ReportHealthy(ctx, inst.ID); err != nil {
		t.Errorf("ReportHealthy of a known instance: %v", err)
	}
	m.Forget()
	if m.listed("rating") {
		t.Error("instance still listed after Forget")
	}
	if err := m.ReportHealthy(ctx, inst.ID); !errors.Is(err, ErrNotRegistered) {
		t.Errorf("ReportHealthy after Forget: err = %v, want ErrNotRegistered", err)
	}
	if err := m.Register(ctx, inst, 5*time.Second, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := m.Deregister(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	if m.listed("rating") {
		t.Error("instance still listed after Deregister")
	}
	if err := m.ReportHealthy(ctx, inst.ID); !errors.Is(err, ErrNotRegistered) {
		t.Errorf("ReportHealthy after Deregister: err = %v, want ErrNotRegistered", err)
	}
	if err := m.Deregister(ctx, inst.ID); err != nil {
		t.Errorf("Deregister of an unknown instance: %v, want nil as Consul's", err)
	}
}

func TestRegisterRejectsUnreachableAddresses(t *testing.T) {
	for _, host := range []string{"", "localhost", "0.0.0.0", "::"} {
		t.Run(host, func(t *testing.T) {
			inst := testInstance("rating")
			inst.Host = host
			err := NewMemory().Register(context.Background(), inst, time.Second, time.Minute)
			if !errors.Is(err, ErrInvalidInstance) {
				t.Errorf("Register with host %q: err = %v, want ErrInvalidInstance", host, err)
			}
		})
	}
}

func TestRegistrationReregistersAfterRegistryForgets(t *testing.T) {
	m := NewMemory()
	inst := testInstance("metadata")
	r, err := Register(context.Background(), m, inst, fastConfig(), quietLogger(), NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())

	m.Forget()
	waitFor(t, 2*time.Second, "instance listed again", func() bool { return m.listed("metadata") })
}

func TestRegistrationCloseDeregistersAndStaysGone(t *testing.T) {
	m := NewMemory()
	inst := testInstance("metadata")
	r, err := Register(context.Background(), m, inst, fastConfig(), quietLogger(), NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r.Registered() {
		t.Error("Registered() = true after Close")
	}
	// A heartbeat that outlived Close would see the instance gone and
	// register it again; several intervals later it must still be gone.
	time.Sleep(5 * fastConfig().HeartbeatInterval)
	if m.listed("metadata") {
		t.Error("after Close: instance listed again")
	}
	if err := r.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// flakyRegistry fails Register a set number of times before delegating.
type flakyRegistry struct {
	*Memory
	mu       sync.Mutex
	failures int
	err      error
	calls    int
}

func (f *flakyRegistry) Register(ctx context.Context, inst Instance, ttl, after time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.failures != 0 {
		f.failures--
		return f.err
	}
	return f.Memory.Register(ctx, inst, ttl, after)
}

func TestRegisterRetries(t *testing.T) {
	unreachable := errors.New("connection refused")
	tests := []struct {
		name     string
		failures int // -1: always
		err      error
		wantErr  error // nil: registers
		calls    int   // 0: any number
	}{
		{name: "registry up after two failures", failures: 2, err: unreachable, calls: 3},
		{name: "registry never up", failures: -1, err: unreachable, wantErr: unreachable},
		{name: "permission denied is not retried", failures: -1, err: ErrPermissionDenied, wantErr: ErrPermissionDenied, calls: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &flakyRegistry{Memory: NewMemory(), failures: tt.failures, err: tt.err}
			cfg := fastConfig()
			cfg.StartTimeout = time.Second
			r, err := Register(context.Background(), f, testInstance("rating"), cfg, quietLogger(), NewMetrics(prometheus.NewRegistry()))
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Register: err = %v, want %v", err, tt.wantErr)
			}
			if err == nil {
				r.Close(context.Background())
			}
			if tt.calls != 0 && f.calls != tt.calls {
				t.Errorf("Register called %d times, want %d", f.calls, tt.calls)
			}
		})
	}
}
