// Command bench measures the movie API against the fan-out floor and the
// per-request lookup in one run and prints one table; it exits 1 if any
// request failed. `bench serve ROLE` runs one of the reference systems'
// processes, which the benchmark starts itself.
//
// `bench -movie-b PATH` is an A/B of two movie builds in one run: the
// movie binary at PATH is measured in turn with the one built from this
// tree, and the table adds the ratios B/A:
//
//	go build -o /tmp/movie-b ./movie/cmd   # on the other branch
//	bin/bench -movie-b /tmp/movie-b
//
// Both movies share the backends, so -movie-b cannot tell two builds of
// metadata or rating apart. `bench -build-b DIR` can: DIR holds a whole
// second build of the three services, and movieapp B, its own 2 metadata,
// 2 rating and 1 movie on a Consul of its own, is measured in turn with
// movieapp built from this tree, its processes reported apart:
//
//	git worktree add /tmp/old REV   # the other revision
//	(cd /tmp/old && for s in movie metadata rating; do go build -o /tmp/old-bin/$s ./$s/cmd || exit 1; done)
//	bin/bench -build-b /tmp/old-bin
//
// Every run but -overload also measures two movies that trace, 1% and 100%
// of their requests, exporting to a real Jaeger, the same way
// (-tracing=false leaves them out).
//
// `bench -overload` measures movie under more load than it can serve, with
// the services' in-flight limit on and off (docs/resilience.md#overload).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"movieexample.com/bench"
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
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) >= 2 && args[0] == "serve" {
		return bench.Serve(ctx, args[1], args[2:], stdout)
	}
	cfg := bench.DefaultConfig()
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&cfg.Connections, "connections", cfg.Connections, "keep-alive connections of the closed loop")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "length of one measurement of one system")
	fs.IntVar(&cfg.Rounds, "rounds", cfg.Rounds, "measurements of each system, taken in turn")
	fs.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "load each system gets before the first round")
	fs.IntVar(&cfg.Rate, "rate", 0, "requests per second of the fixed-rate rounds (default half the floor's closed-loop rate; negative: none, the closed loop alone)")
	fs.StringVar(&cfg.GOGC, "gogc", "", "GOGC of the services and reference processes (default: Go's, 100)")
	fs.StringVar(&cfg.ProfileDir, "profile", "", "directory for CPU and allocation profiles of movie, metadata, rating (and movieapp B's, with -build-b), the other movies and the floor's processes, taken during their system's first round")
	overload := fs.Bool("overload", false, "measure overload instead: movie's closed-loop capacity, then open-loop load at 0.5x, 1.5x and 2x of it, with -max-inflight at its default on every service and at 0, interleaved")
	fs.IntVar(&cfg.Outstanding, "outstanding", cfg.Outstanding, "with -overload: requests the open loop awaits at once; an arrival beyond is not sent")
	fs.IntVar(&cfg.MaxInFlight, "max-inflight", cfg.MaxInFlight, "with -overload: -max-inflight of every service when protection is on")
	fs.BoolVar(&cfg.Pin, "pin", cfg.Pin, "with -overload: run the load generator on the last CPU and the services and Consul on the others, as if the clients were on another machine")
	fs.StringVar(&cfg.MovieB, "movie-b", "", "`path` of a second movie binary, for an A/B: measured right after the movie built from this tree in every round, on the same backends and Consul; the report adds its figures and the ratios B/A")
	fs.StringVar(&cfg.BuildB, "build-b", "", "`dir`ectory of a second build of the services (movie, metadata, rating), for an A/B of the backends too: movieapp B, 2 metadata, 2 rating and 1 movie from it on a Consul of its own, measured right after movie (and movie B) in every round; the report adds its figures, its processes and the ratios B/A")
	fs.BoolVar(&cfg.Tracing, "tracing", cfg.Tracing, "also measure movie tracing 1% and 100% of its requests, exporting to a real Jaeger (bin/jaeger, make jaeger-bin) on loopback, each round right after movie; the report adds their ratios to movie, which does not trace (-tracing=false leaves them out; -overload never has them)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.Connections < 1 || cfg.Rounds < 1 || cfg.Duration <= 0 || cfg.Warmup < 0 || cfg.Outstanding < 1 || cfg.MaxInFlight < 1 {
		return errors.New("connections, rounds, outstanding and max-inflight must be at least 1, duration positive, warmup not negative")
	}
	if *overload {
		if cfg.MovieB != "" || cfg.BuildB != "" || cfg.ProfileDir != "" {
			return errors.New("-overload measures this tree's services alone: no -movie-b, -build-b or -profile")
		}
		return bench.RunOverload(ctx, cfg, stdout, stderr)
	}
	// Before Consul starts and the services build, not a minute later.
	if cfg.MovieB != "" {
		if _, err := os.Stat(cfg.MovieB); err != nil {
			return fmt.Errorf("-movie-b: %w", err)
		}
	}
	if cfg.BuildB != "" {
		if err := checkBuild(cfg.BuildB); err != nil {
			return fmt.Errorf("-build-b: %w", err)
		}
	}
	return bench.Run(ctx, cfg, stdout, stderr)
}

// checkBuild returns an error unless dir holds an executable of each
// service, under the names cluster.Build gives them.
func checkBuild(dir string) error {
	for _, s := range cluster.Services {
		path := filepath.Join(dir, s)
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return fmt.Errorf("%s is not an executable file", path)
		}
	}
	return nil
}
