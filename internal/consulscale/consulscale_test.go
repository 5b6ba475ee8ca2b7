package consulscale

import (
	"context"
	"testing"
	"time"

	"movieexample.com/internal/devconsul"
)

// TestModes runs the harness small in every mode against a real cluster
// and checks what each mode is: every watcher sees every change, and the
// servers run a blocking query for each watcher's wake-up exactly when the
// streaming backend is off. A mode that did not do what it says (a
// streaming run whose queries still reached the servers, say) would make
// docs/scale.md's table measure the wrong thing.
func TestModes(t *testing.T) {
	if _, err := devconsul.Binary(); err != nil {
		t.Fatalf("consul: %v", err) // never a skip: the cluster is the point
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const watchers = 8
	results, err := Run(ctx, Config{
		Modes:    Modes,
		Sizes:    []Size{{Watchers: watchers, Instances: 10, Churn: 4}},
		Duration: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != len(Modes) {
		t.Fatalf("%d results, want %d", len(results), len(Modes))
	}
	for _, r := range results {
		t.Logf("%s: %d changes, %.1f server queries and %.1f wake-ups a change, %d streams, all saw it p50 %s max %s",
			r.Mode, r.Changes, r.ServerQueries, r.Wakeups, r.Subscriptions, r.SeenP50, r.SeenMax)
		if r.Changes < 2 || r.Missed != 0 {
			t.Errorf("%s: %d changes, %d missed by some watcher; want every change seen by all", r.Mode, r.Changes, r.Missed)
		}
		// Every watcher wakes at least once per change; changes close
		// together may share one wake-up, hence the half.
		if r.Wakeups < watchers/2 {
			t.Errorf("%s: %.1f wake-ups a change for %d watchers", r.Mode, r.Wakeups, watchers)
		}
		switch r.Mode {
		case Streaming:
			// The servers see the agents' own reads (anti-entropy), not
			// the watchers'.
			if r.ServerQueries >= r.Wakeups/2 {
				t.Errorf("streaming: %.1f server queries a change for %.1f wake-ups: the watchers' queries reach the servers", r.ServerQueries, r.Wakeups)
			}
			if r.Subscriptions == 0 {
				t.Errorf("streaming: the servers serve no streams")
			}
		default:
			if r.ServerQueries < r.Wakeups {
				t.Errorf("%s: %.1f server queries a change for %.1f wake-ups: some wake-ups were not the servers'", r.Mode, r.ServerQueries, r.Wakeups)
			}
		}
	}
}
