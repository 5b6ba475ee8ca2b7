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

func TestMemoryRegistry(t *testing.T) {
	now := time.Unix(0, 0)
	m := NewMemoryWithClock(func() time.Time { return now })
	ctx := context.Background()

	if _, err := m.Instances(ctx, "rating"); !errors.Is(err, ErrNoInstances) {
		t.Fatalf("Instances of an empty registry: err = %v, want ErrNoInstances", err)
	}
	inst := testInstance("rating")
	if err := m.Register(ctx, inst, 5*time.Second, time.Minute); err != nil {
		t.Fatal(err)
	}
	got, err := m.Instances(ctx, "rating")
	if err != nil || len(got) != 1 || got[0] != inst {
		t.Fatalf("Instances = %v, %v; want [%v]", got, err, inst)
	}
	now = now.Add(6 * time.Second) // TTL lapsed
	if _, err := m.Instances(ctx, "rating"); !errors.Is(err, ErrNoInstances) {
		t.Errorf("expired instance: err = %v, want ErrNoInstances", err)
	}
	if err := m.ReportHealthy(ctx, inst.ID); err != nil {
		t.Errorf("ReportHealthy of a known instance: %v", err)
	}
	if _, err := m.Instances(ctx, "rating"); err != nil {
		t.Errorf("renewed instance: %v", err)
	}
	m.Forget()
	if err := m.ReportHealthy(ctx, inst.ID); !errors.Is(err, ErrNotRegistered) {
		t.Errorf("ReportHealthy after Forget: err = %v, want ErrNotRegistered", err)
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
	waitFor(t, 2*time.Second, "instance listed again", func() bool {
		_, err := m.Instances(context.Background(), "metadata")
		return err == nil
	})
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
	if got, err := m.Instances(context.Background(), "metadata"); !errors.Is(err, ErrNoInstances) {
		t.Errorf("after Close: Instances = %v, %v; want ErrNoInstances", got, err)
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
