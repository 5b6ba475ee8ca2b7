package chaos

import (
	"context"
	"strings"
	"testing"
	"time"

	"movieexample.com/internal/cluster"
)

// TestScenarios is the short version of `make chaos` that CI runs: every
// scenario, for a couple of seconds each, against the real binaries, and
// the same expectations as the full run: not
// one failed request and not one wrong answer, no answer without its rating
// except while rating is down, and then every answer degraded.
func TestScenarios(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	// Built without the race detector: it multiplies the services' CPU,
	// and on a shared 2-core machine the load then measures the machine,
	// not movie (the gateway's and discovery's own tests run under -race
	// in process). `make chaos CHAOS_FLAGS=-race` runs the services with
	// it, and fails on any race they report.
	if err := cluster.Build(ctx, dir, false); err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Rate:      100,
		Hold:      2 * time.Second,
		Outage:    6 * time.Second,
		Freeze:    20 * time.Second, // the case reported, as in make chaos
		SlowDelay: 2 * time.Second,
		Seed:      1,
		Progress:  testWriter{t},
	}
	env, err := Start(ctx, dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs last: after Close, when every process
	// has exited and written all it had to say. (Only a binary built with
	// the race detector reports races; the check costs nothing otherwise.)
	t.Cleanup(func() {
		for _, race := range env.Races() {
			t.Errorf("data race reported by %s", race)
		}
	})
	t.Cleanup(env.Close)

	for i, s := range Scenarios() {
		t.Run(s.Name, func(t *testing.T) {
			r, err := s.Run(ctx, env, cfg.Seed+uint64(i))
			if err != nil {
				t.Fatal(err)
			}
			var report strings.Builder
			Print(&report, []*Result{r})
			t.Log("\n" + report.String())
			for _, p := range r.Problems {
				t.Error(p)
			}
			if t.Failed() {
				t.Logf("movie's log:\n%s", env.MovieLogs())
			}
		})
	}
}

// testWriter sends the harness's progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
