package gateway

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"movieexample.com/internal/metricstest"
	metadatahttp "movieexample.com/metadata/httpapi"
	"movieexample.com/pkg/errs"
	"movieexample.com/pkg/web"
)

// shedding answers as an instance at its -max-inflight limit does.
func shedding(w http.ResponseWriter, r *http.Request) { web.WriteOverloaded(w) }

// overloadConfig is DefaultConfig with a budget that never cuts a retry
// short, so that what these tests see is the rotation's doing alone.
func overloadConfig() Config {
	cfg := DefaultConfig()
	cfg.BreakerFailures = 3
	cfg.RetryRatio = 1
	cfg.MinRetriesPerSecond = 1000
	return cfg
}

func TestOverloadedInstanceIsAskedOncePerCall(t *testing.T) {
	tests := []struct {
		name        string
		others      int // healthy instances next to the shedding one
		wantErr     bool
		wantHealthy int64 // calls the healthy instances answer between them
	}{
		{name: "the only instance: not asked again, the call fails at once", others: 0, wantErr: true},
		{name: "retried on the other instance", others: 1, wantHealthy: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			busy := newBackend(t, shedding)
			addrs := []string{busy.addr()}
			var healthy []*backend
			for range tt.others {
				b := newBackend(t, okMetadata)
				healthy = append(healthy, b)
				addrs = append(addrs, b.addr())
			}
			c, _ := newMetadata(t, overloadConfig(), addrs...)
			// Enough calls that every one lands on the busy instance first
			// in some of them, and more than BreakerFailures in a row.
			const calls = 40
			for i := range calls {
				busyBefore := busy.hits.Load()
				_, err := c.Get(context.Background(), "1")
				if got := busy.hits.Load() - busyBefore; got > 1 {
					t.Fatalf("call %d asked the shedding instance %d times, want at most once", i, got)
				}
				switch {
				case tt.wantErr && !errors.Is(err, errs.ErrOverloaded):
					t.Fatalf("call %d: err = %v, want errs.ErrOverloaded", i, err)
				case tt.wantErr && !errors.Is(err, ErrUnavailable):
					t.Fatalf("call %d: err = %v, want ErrUnavailable too", i, err)
				case !tt.wantErr && err != nil:
					t.Fatalf("call %d: %v (the other instance should answer)", i, err)
				}
			}
			// Never ejected: every call that started on it still asked it.
			if tt.others == 0 {
				if got := busy.hits.Load(); got != calls {
					t.Errorf("shedding instance asked %d times over %d calls, want %d: its breaker must not open", got, calls, calls)
				}
				return
			}
			if got := healthy[0].hits.Load(); got != calls {
				t.Errorf("healthy instance answered %d of %d calls, want all", got, calls)
			}
			if busy.hits.Load() == 0 {
				t.Error("the shedding instance was never asked: the test shows nothing")
			}
		})
	}
}

func TestOverloadedIsNotABreakerFailure(t *testing.T) {
	busy := newBackend(t, shedding)
	healthy := newBackend(t, okMetadata)
	cfg := overloadConfig()
	cfg.BreakerCooldown = 1 << 62 // an ejection would last the whole test
	c, u := newMetadata(t, cfg, busy.addr(), healthy.addr())
	for range 200 {
		if _, err := c.Get(context.Background(), "1"); err != nil {
			t.Fatal(err)
		}
	}
	// Opened after 3 sheds, the breaker would have kept every later call
	// off it: about half the calls start on it.
	if got := busy.hits.Load(); got <= int64(cfg.BreakerFailures) {
		t.Errorf("shedding instance asked %d times over 200 calls: ejected, want it kept", got)
	}
	if got := testutil.ToFloat64(u.m.ejections); got != 0 {
		t.Errorf("ejections = %v, want 0", got)
	}
}

func TestOverloadedHasItsOwnOutcome(t *testing.T) {
	busy := newBackend(t, shedding)
	reg := prometheus.NewRegistry()
	u := newUpstreamIn(t, reg, "metadata", metadatahttp.NewFactory(web.NewTransport()), overloadConfig(), busy.addr())
	c := metadatahttp.NewClient(u.Endpoint())
	for range 3 {
		c.Get(context.Background(), "1")
	}
	m := metricstest.Gather(t, reg)
	for _, tt := range []struct {
		metric, outcome string
		want            float64
	}{
		{"movieapp_gateway_upstream_requests_total", "overloaded", 3},
		{"movieapp_gateway_upstream_requests_total", "unavailable", 0},
		{"movieapp_gateway_upstream_calls_total", "overloaded", 3},
		{"movieapp_gateway_upstream_calls_total", "unavailable", 0},
		{"movieapp_gateway_upstream_retries_total", "", 0},
	} {
		labels := map[string]string{"target": "metadata"}
		if tt.outcome != "" {
			labels["outcome"] = tt.outcome
		}
		if got, _ := m.Value(tt.metric, labels); got != tt.want {
			t.Errorf("%s{outcome=%q} = %v, want %v", tt.metric, tt.outcome, got, tt.want)
		}
	}
}
