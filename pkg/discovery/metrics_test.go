package discovery

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"movieexample.com/internal/metricstest"
)

// beatFailer is a Memory registry whose heartbeats can be made to fail, as
// they do while Consul is unreachable.
type beatFailer struct {
	*Memory
	failing atomic.Bool
}

func (b *beatFailer) ReportHealthy(ctx context.Context, id string) error {
	if b.failing.Load() {
		return errors.New("connection refused")
	}
	return b.Memory.ReportHealthy(ctx, id)
}

func TestLifecycleMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	value := func(name string, labels map[string]string) float64 {
		v, ok := metricstest.Gather(t, reg).Value(name, labels)
		if !ok {
			t.Fatalf("no series %s%v", name, labels)
		}
		return v
	}
	ok := map[string]string{"result": "ok"}
	failed := map[string]string{"result": "failed"}
	initial := map[string]string{"reason": "initial"}
	reregister := map[string]string{"reason": "reregister"}

	// Every series is there at 0 before anything happened, so that the
	// first failure is an increase that rate() and alerts can see.
	for _, s := range []struct {
		name   string
		labels map[string]string
	}{
		{"movieapp_discovery_heartbeats_total", ok}, {"movieapp_discovery_heartbeats_total", failed},
		{"movieapp_discovery_registrations_total", initial}, {"movieapp_discovery_registrations_total", reregister},
		{"movieapp_discovery_registered", nil},
	} {
		if v := value(s.name, s.labels); v != 0 {
			t.Errorf("%s%v = %v before registering, want 0", s.name, s.labels, v)
		}
	}

	registry := &beatFailer{Memory: NewMemory()}
	r, err := Register(context.Background(), registry, testInstance("rating"), fastConfig(), quietLogger(), m)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(context.Background())
	if v := value("movieapp_discovery_registrations_total", initial); v != 1 {
		t.Errorf("registrations{initial} = %v, want 1", v)
	}
	if v := value("movieapp_discovery_registered", nil); v != 1 {
		t.Errorf("registered = %v after registering, want 1", v)
	}
	waitFor(t, 5*time.Second, "heartbeats{ok} counting", func() bool {
		return value("movieapp_discovery_heartbeats_total", ok) >= 3
	})

	registry.failing.Store(true)
	waitFor(t, 5*time.Second, "heartbeats{failed} counting and registered 0", func() bool {
		return value("movieapp_discovery_heartbeats_total", failed) >= 2 && value("movieapp_discovery_registered", nil) == 0
	})
	registry.failing.Store(false)
	waitFor(t, 5*time.Second, "registered 1 again once heartbeats pass", func() bool {
		return value("movieapp_discovery_registered", nil) == 1
	})

	registry.Forget() // as a restarted Consul dev agent does
	waitFor(t, 5*time.Second, "registrations{reregister} counting", func() bool {
		return value("movieapp_discovery_registrations_total", reregister) == 1
	})
	if v := value("movieapp_discovery_registrations_total", initial); v != 1 {
		t.Errorf("registrations{initial} = %v after a re-registration, want still 1", v)
	}

	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v := value("movieapp_discovery_registered", nil); v != 0 {
		t.Errorf("registered = %v after Close, want 0", v)
	}
	if problems := metricstest.Gather(t, reg).Lint(t, "movieapp_"); len(problems) > 0 {
		t.Errorf("promlint: %v", problems)
	}
	if got := metricstest.Gather(t, reg).LabelValues("movieapp_discovery_heartbeats_total", "result"); !slices.Equal(got, []string{"failed", "ok"}) {
		t.Errorf("heartbeat results %v, want exactly failed and ok", got)
	}
}

// TestMetricsOfOneRegistryAreShared checks that asking twice for the
// metrics of one registry, as movie does for its registration and for its
// Instancers, neither panics nor splits a series in two.
func TestMetricsOfOneRegistryAreShared(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, b := NewMetrics(reg), NewMetrics(reg)
	a.registered.Set(1)
	a.holds.WithLabelValues("rating").Inc()
	b.holds.WithLabelValues("rating").Inc()
	b.ignoredEntries.WithLabelValues("rating").Set(3)

	got := metricstest.Gather(t, reg)
	for _, s := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"movieapp_discovery_registered", nil, 1},
		{"movieapp_discovery_holds_total", map[string]string{"target": "rating"}, 2},
		{"movieapp_discovery_ignored_entries", map[string]string{"target": "rating"}, 3},
	} {
		if v, ok := got.Value(s.name, s.labels); !ok || v != s.want {
			t.Errorf("%s%v = %v (found %v), want %v", s.name, s.labels, v, ok, s.want)
		}
	}
	if problems := got.Lint(t, "movieapp_"); len(problems) > 0 {
		t.Errorf("promlint: %v", problems)
	}
}
