package chaos

import (
	"context"
	"slices"
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
		// Under the attempt timeout and the breaker's notice: only the
		// balancer can route around it.
		SlowerDelay: 20 * time.Millisecond,
		Seed:        1,
		Progress:    testWriter{t},
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

	var random *Result
	for i, s := range Scenarios() {
		t.Run(s.Name, func(t *testing.T) {
			r := runScenario(t, ctx, env, s, cfg.Seed+uint64(i))
			if s.Name == "slower-instance" {
				random = r
			}
		})
	}

	// The same slower instance with movie balancing by p2c: it must get a
	// clearly smaller share than under random choice (which gives it about
	// half; p2c, about a quarter at this rate, see docs/resilience.md).
	t.Run("slower-instance-p2c", func(t *testing.T) {
		if random == nil || random.SlowShare == 0 {
			t.Fatal("no share measured under random choice to compare with")
		}
		p2cCfg := cfg
		p2cCfg.MovieArgs = []string{"-balancer=p2c"}
		p2c, err := Start(ctx, dir, p2cCfg)
		if err != nil {
			t.Fatal(err)
		}
		defer p2c.Close()
		i := slices.IndexFunc(Scenarios(), func(s Scenario) bool { return s.Name == "slower-instance" })
		r := runScenario(t, ctx, p2c, Scenarios()[i], cfg.Seed)
		t.Logf("slower instance's share of rating requests: random %.1f%%, p2c %.1f%%", 100*random.SlowShare, 100*r.SlowShare)
		if r.SlowShare == 0 || r.SlowShare > random.SlowShare-0.1 {
			t.Errorf("p2c gave the slower instance %.1f%% of the rating requests, random %.1f%%: want at least 10 points less",
				100*r.SlowShare, 100*random.SlowShare)
		}
	})
}

// runScenario runs s in env as a subtest does: its report in the log,
// each problem an error, movie's log if it failed.
func runScenario(t *testing.T, ctx context.Context, env *Env, s Scenario, seed uint64) *Result {
	t.Helper()
	r, err := s.Run(ctx, env, seed)
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
	return r
}

// testWriter sends the harness's progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
