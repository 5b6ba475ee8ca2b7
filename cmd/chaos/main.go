// Command chaos is movieapp's churn harness: it starts a real Consul dev
// agent and the real service binaries on loopback, drives GET /movie at a
// steady open-loop rate, runs the resilience scenarios one after another
// (rolling restart, crash, scale up, Consul outage, dependency down, slow
// instance, a slower instance, address reuse both ways, foreign entry, Consul freeze, client
// hang-ups) and prints, for each, the requests sent, failed and answered
// wrongly, latency, the split across instances and how long each change
// took to take effect. It exits 1 if any scenario lost a request, answered
// one wrongly or missed an expectation.
//
//	go run ./cmd/chaos -rate 300 -duration 10s -seed 1
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"movieexample.com/internal/chaos"
	"movieexample.com/internal/cluster"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		stop()
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
}

// errProblems means at least one scenario lost requests or missed an
// expectation; the report says which.
var errProblems = errors.New("some scenarios did not pass")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, opts, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	scenarios, err := pick(opts.only)
	if err != nil {
		return err
	}

	binDir := opts.binDir
	if binDir == "" {
		dir, err := os.MkdirTemp("", "movieapp-chaos-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		fmt.Fprintln(stderr, "building the services...")
		if err := cluster.Build(ctx, dir, opts.race); err != nil {
			return err
		}
		binDir = dir
	}

	env, err := chaos.Start(ctx, binDir, cfg)
	if err != nil {
		return err
	}
	defer env.Close()
	if opts.movieLog != "" {
		defer func() { _ = os.WriteFile(opts.movieLog, []byte(env.MovieLogs()), 0o644) }()
	}

	fmt.Fprintf(stdout, "rate %.0f/s, duration %s, outage %s, freeze %s, slow delay %s, slower delay %s, seed %d, movie args %q, service args %q\n\n",
		cfg.Rate, cfg.Hold, cfg.Outage, cfg.Freeze, cfg.SlowDelay, cfg.SlowerDelay, cfg.Seed, opts.movieArgs, opts.serviceArgs)
	err = runScenarios(ctx, stdout, env, cfg.Seed, scenarios)
	env.Close() // so that every process has written its last word
	if races := env.Races(); len(races) > 0 {
		for _, race := range races {
			fmt.Fprintf(stdout, "data race reported by %s\n", race)
		}
		return errors.Join(err, fmt.Errorf("%d processes reported a data race", len(races)))
	}
	return err
}

// options are the flags that are not the harness's Config.
type options struct {
	only, movieArgs, serviceArgs string
	binDir, movieLog             string
	race, quiet                  bool
}

// parseFlags returns the harness's Config and the other flags from args,
// or an error if they do not parse or are out of range.
func parseFlags(args []string, stderr io.Writer) (chaos.Config, options, error) {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := chaos.Config{}
	var opts options
	fs.Float64Var(&cfg.Rate, "rate", 300, "requests per second sent to movie")
	fs.DurationVar(&cfg.Hold, "duration", 10*time.Second, "steady load before and after each scenario's change")
	fs.DurationVar(&cfg.Outage, "outage", 30*time.Second, "how long Consul stays down")
	fs.DurationVar(&cfg.Freeze, "freeze", 20*time.Second, "how long Consul stays stopped (SIGSTOP) in consul-freeze")
	fs.DurationVar(&cfg.SlowDelay, "slow-delay", 2*time.Second, "how long the slow instance holds each answer")
	fs.DurationVar(&cfg.SlowerDelay, "slower-delay", 20*time.Millisecond, "how much slower the slower instance answers in slower-instance")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "seed of the request mix and the choice of victims")
	fs.StringVar(&opts.only, "scenarios", "", "comma-separated scenarios to run (default all): "+strings.Join(names(), ","))
	fs.StringVar(&opts.movieArgs, "movie-args", "", "extra flags for movie, space-separated (e.g. \"-max-attempts=1\")")
	fs.StringVar(&opts.serviceArgs, "service-args", "", "extra flags for every metadata and rating instance, space-separated (e.g. \"-drain=0\")")
	fs.StringVar(&opts.binDir, "bin", "", "directory with prebuilt metadata, rating and movie binaries (default: build them)")
	fs.BoolVar(&opts.race, "race", false, "build the services with the race detector")
	fs.StringVar(&opts.movieLog, "movie-log", "", "write movie's log to this file at the end")
	fs.BoolVar(&opts.quiet, "q", false, "print only the report, not each step")
	if err := fs.Parse(args); err != nil {
		return cfg, opts, err
	}
	if cfg.Rate <= 0 || cfg.Hold <= 0 || cfg.Outage <= 0 || cfg.Freeze <= 0 || cfg.SlowDelay <= 0 || cfg.SlowerDelay <= 0 {
		return cfg, opts, errors.New("rate, duration, outage, freeze, slow-delay and slower-delay must be positive")
	}
	cfg.MovieArgs = strings.Fields(opts.movieArgs)
	cfg.ServiceArgs = strings.Fields(opts.serviceArgs)
	if !opts.quiet {
		cfg.Progress = stderr
	}
	return cfg, opts, nil
}

// runScenarios runs the scenarios one after another, the i-th with seed+i,
// and prints their results. It returns errProblems if any did not pass, or
// the error of a scenario that could not be run.
func runScenarios(ctx context.Context, stdout io.Writer, env *chaos.Env, seed uint64, scenarios []chaos.Scenario) error {
	var results []*chaos.Result
	for i, s := range scenarios {
		r, err := s.Run(ctx, env, seed+uint64(i))
		if err != nil {
			chaos.Print(stdout, results)
			return err
		}
		results = append(results, r)
	}
	fmt.Fprintln(stdout)
	chaos.Print(stdout, results)
	for _, r := range results {
		if !r.OK() {
			return errProblems
		}
	}
	return nil
}

func names() []string {
	var out []string
	for _, s := range chaos.Scenarios() {
		out = append(out, s.Name)
	}
	return out
}

// pick returns the scenarios named in only, in their usual order.
func pick(only string) ([]chaos.Scenario, error) {
	all := chaos.Scenarios()
	if only == "" {
		return all, nil
	}
	want := strings.Split(only, ",")
	for _, n := range want {
		if !slices.Contains(names(), n) {
			return nil, fmt.Errorf("unknown scenario %q (have %s)", n, strings.Join(names(), ","))
		}
	}
	var out []chaos.Scenario
	for _, s := range all {
		if slices.Contains(want, s.Name) {
			out = append(out, s)
		}
	}
	return out, nil
}
