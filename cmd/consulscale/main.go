// Command consulscale measures what service discovery costs a Consul
// cluster as gateways and instances grow (see internal/consulscale): for
// each read mode, a three-server cluster on loopback, and for each size N
// watchers, M instances and C changes a second; it prints one table row per
// size and mode. docs/scale.md holds its figures and what they imply.
//
//	go run ./cmd/consulscale -watchers 10,50,200 -instances 50,500 -churn 2 -duration 15s
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"movieexample.com/internal/consulscale"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		stop()
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "consulscale:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("consulscale", flag.ContinueOnError)
	fs.SetOutput(stderr)
	modes := fs.String("modes", "default,stale,streaming", "read modes to measure: default, stale, streaming")
	watchers := fs.String("watchers", "10,50,200", "numbers of watchers (gateways), comma-separated")
	instances := fs.String("instances", "50,500", "numbers of registered instances, comma-separated")
	churn := fs.Float64("churn", 2, "changes a second (a registration or a deregistration)")
	duration := fs.Duration("duration", 15*time.Second, "how long each size churns")
	agents := fs.Int("agents", 2, "client agents (hosts), on 127.0.0.21 and up; watchers and instances spread over them")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg := consulscale.Config{Duration: *duration, Progress: stderr}
	for _, s := range strings.Split(*modes, ",") {
		m, err := consulscale.ParseMode(strings.TrimSpace(s))
		if err != nil {
			return err
		}
		cfg.Modes = append(cfg.Modes, m)
	}
	ns, err := ints(*watchers)
	if err != nil {
		return fmt.Errorf("-watchers: %w", err)
	}
	ms, err := ints(*instances)
	if err != nil {
		return fmt.Errorf("-instances: %w", err)
	}
	for _, m := range ms {
		for _, n := range ns {
			cfg.Sizes = append(cfg.Sizes, consulscale.Size{Watchers: n, Instances: m, Churn: *churn})
		}
	}
	if *agents < 1 || *agents > 200 {
		return errors.New("-agents: between 1 and 200")
	}
	for i := range *agents {
		cfg.Agents = append(cfg.Agents, net.IPv4(127, 0, 0, byte(21+i)).String())
	}
	results, err := consulscale.Run(ctx, cfg)
	print(stdout, *agents, results)
	return err
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// print writes the results as a Markdown table, the form docs/scale.md
// keeps them in.
func print(w io.Writer, agents int, results []consulscale.Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintf(tw, "| mode\tN\tM\tC/s\tchanges\tmissed\tservers (cores)\tidle\tleader\tnew leader\tserver ms/change\tagents (%d)\tidle\tagent ms/change\tharness\tserver queries/change\twake-ups/change\tKB read/change\tstreams\tall saw it p50\tmax\t\n", agents)
	fmt.Fprintln(tw, "|---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t")
	for _, r := range results {
		changed := "no"
		if r.LeaderChanged {
			changed = "yes"
		}
		fmt.Fprintf(tw, "| %s\t%d\t%d\t%g\t%d\t%d\t%.2f\t%.2f\t%.2f\t%s\t%s\t%.2f\t%.2f\t%s\t%.2f\t%.0f\t%.0f\t%.0f\t%d\t%s\t%s\t\n",
			r.Mode, r.Watchers, r.Instances, r.Churn, r.Changes, r.Missed,
			r.Servers, r.Idle, r.Leader, changed, perChange(r.PerChange()),
			r.AgentsCPU, r.AgentsIdle, perChange(r.AgentsPerChange()), r.Harness,
			r.ServerQueries, r.Wakeups, r.Bytes/1024, r.Subscriptions,
			ms(r.SeenP50), ms(r.SeenMax))
	}
	tw.Flush()
}

// perChange prints a processor time per change; "~0" when it is within the
// noise of the idle use.
func perChange(d time.Duration) string {
	if d == 0 {
		return "~0"
	}
	return fmt.Sprintf("%.0f", float64(d)/1e6)
}

func ms(d time.Duration) string {
	if d < 10*time.Millisecond {
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	}
	return d.Round(time.Millisecond).String()
}
