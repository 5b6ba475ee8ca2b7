package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"text/tabwriter"
	"time"

	"movieexample.com/internal/devconsul"
	"movieexample.com/pkg/instance"
)

// Targets of the issue that asked for overload protection, with the
// protection on, at twice movie's closed-loop capacity.
const (
	targetGoodput     = 0.9 // 200s per second over the capacity, at least
	targetAdmittedP99 = 3   // p99 of the 200s over their p99 at half the capacity, at most
)

// overloadMultiples are the open loop's offered rates, as multiples of
// movie's closed-loop capacity: half (the reference p99) and two overloads.
var overloadMultiples = []float64{0.5, 1.5, 2}

// overloadConnections are the closed loops that show how many requests in
// flight movie needs to reach its capacity, what -max-inflight's default is
// derived from.
var overloadConnections = []int{4, 8, 16, 32, 64}

// stack is one movieapp (Consul, two metadata, two rating, one movie) with
// or without overload protection, and what its measurements gave.
type stack struct {
	name      string
	agent     *devconsul.Agent
	app       *movieapp
	targets   []Target
	closedC   *http.Client
	openC     *http.Client
	closed    Sample
	rates     []float64 // each closed-loop round's throughput
	open      map[float64]*OpenSample
	cpu       map[float64]*openCPU // what the open loop at each multiple cost
	curve     []Sample             // closed loop by overloadConnections
	maxFlight string               // what -max-inflight was
}

func (st *stack) stop() {
	if st.app != nil {
		st.app.stop()
	}
	if st.agent != nil {
		st.agent.Stop()
	}
}

// RunOverload measures movie under more load than it can serve, with the
// in-flight limit at its default on every service and with it off, in one
// session: two movieapps, each on a Consul of its own so that neither's
// movie discovers the other's instances, measured in turn. It takes movie's
// closed-loop capacity (the unprotected stack's right answers per second
// over cfg.Rounds closed loops of cfg.Connections), then offers open-loop load at each of
// overloadMultiples of it, and writes the table to out. It returns an error
// only if something could not be started: under overload, failed requests
// are what is measured.
func RunOverload(ctx context.Context, cfg Config, out, progress io.Writer) error {
	logf := func(format string, args ...any) { fmt.Fprintf(progress, format+"\n", args...) }
	loadStart := loadAverage()
	dir, err := buildServices(ctx, logf)
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	serviceEnv, _ := measuredEnv(cfg.GOGC)
	machine := fmt.Sprintf("%d CPUs shared with the load generator", runtime.NumCPU())
	var split *cpuSplit
	if cfg.Pin {
		if split, err = newCPUSplit(); err != nil {
			return err
		}
		if err := split.forServices(); err != nil {
			return err
		}
		machine = fmt.Sprintf("%d CPUs: %s", runtime.NumCPU(), split.desc)
	}
	on := &stack{name: "on", maxFlight: strconv.Itoa(cfg.MaxInFlight)}
	if cfg.MaxInFlight == instance.DefaultMaxInFlight {
		on.maxFlight += " (default)"
	}
	off := &stack{name: "off", maxFlight: "0"}
	defer on.stop()
	defer off.stop()
	for _, st := range []*stack{on, off} {
		extra := []string{"-max-inflight", strconv.Itoa(cfg.MaxInFlight)}
		if st == off {
			extra = []string{"-max-inflight", "0"}
		}
		if err := st.start(ctx, cfg, dir, serviceEnv, logf, extra...); err != nil {
			return err
		}
	}
	stacks := []*stack{on, off}
	if split != nil {
		if err := split.forGenerator(); err != nil {
			return err
		}
	}

	warm := Load{Connections: cfg.Connections, Duration: cfg.Warmup}
	for _, st := range stacks {
		if cfg.Warmup > 0 {
			logf("warming up protection %s for %s", st.name, cfg.Warmup)
			Attack(ctx, st.closedC, st.targets, warm)
		}
	}
	curve(ctx, cfg, off, logf)
	for r := 1; r <= cfg.Rounds; r++ {
		for _, st := range stacks {
			s := Attack(ctx, st.closedC, st.targets, Load{Connections: cfg.Connections, Duration: cfg.Duration})
			st.closed.Add(s)
			st.rates = append(st.rates, okRate(s))
			logf("closed loop %d/%d protection %-3s %8.0f req/s  p99 %s  %s", r, cfg.Rounds, st.name, s.Rate(), ms(s.Quantile(.99)), failures(s))
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	// Without the limit, so that a limit under cfg.Connections shows as
	// what it costs, not as a lower capacity; and of the right answers only.
	capacity := okRate(off.closed)
	if capacity <= 0 {
		return fmt.Errorf("movie's closed-loop capacity measured 0: %s", failures(off.closed))
	}
	if err := openRounds(ctx, cfg, stacks, capacity, logf); err != nil {
		return err
	}
	overloadReport(ctx, out, cfg, on, off, capacity, machine, loadStart)
	return nil
}

// okRate is the rate of s's right answers.
func okRate(s Sample) float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Requests-s.Failures) / s.Elapsed.Seconds()
}

// start starts st's Consul and services with extra flags on every service.
func (st *stack) start(ctx context.Context, cfg Config, dir string, env []string, logf func(string, ...any), extra ...string) error {
	logf("protection %s (-max-inflight %s): starting Consul", st.name, st.maxFlight)
	var err error
	if st.agent, err = devconsul.Start(ctx, nil); err != nil {
		return err
	}
	st.app, err = startMovieapp(ctx, cfg, dir, st.agent.Addr, env, logf, extra...)
	if err != nil {
		return err
	}
	st.targets, err = Targets("http://"+st.app.movie.Addr, ids, want)
	st.closedC, st.openC = NewLoadClient(), NewOpenLoadClient(cfg.Outstanding)
	st.open = map[float64]*OpenSample{}
	st.cpu = map[float64]*openCPU{}
	return err
}

// openCPU is the CPU time movie, its four backends and the load generator
// used over the open-loop rounds at one rate, and how long those took.
type openCPU struct {
	movie, backends, gen, elapsed time.Duration
}

// cores formats CPU time d used over o.elapsed as the CPUs it kept busy.
func (o *openCPU) cores(d time.Duration) string {
	if o.elapsed <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", d.Seconds()/o.elapsed.Seconds())
}

// procs returns movie's process and its backends', for CPU times.
func (st *stack) procs() (movie process, backends []process) {
	for _, p := range st.app.backends {
		backends = append(backends, process{pid: p.PID()})
	}
	return process{pid: st.app.movie.PID()}, backends
}

// measureOpen takes one open-loop measurement of st and adds it, with the
// CPU it cost, to st's figures at multiple m.
func (st *stack) measureOpen(ctx context.Context, m float64, load OpenLoad) OpenSample {
	mv, backends := st.procs()
	self := []process{{pid: os.Getpid()}}
	mvBefore, bBefore, genBefore := cpuOf([]process{mv}), cpuOf(backends), cpuOf(self)
	s := AttackOpen(ctx, st.openC, st.targets, load)
	if st.open[m] == nil {
		st.open[m], st.cpu[m] = &OpenSample{}, &openCPU{}
	}
	st.open[m].Add(s)
	c := st.cpu[m]
	c.movie += cpuOf([]process{mv}) - mvBefore
	c.backends += cpuOf(backends) - bBefore
	c.gen += cpuOf(self) - genBefore
	c.elapsed += s.Elapsed
	return s
}

// shedBy returns how many requests movie and its backends shed so far,
// from their own /metrics.
func (st *stack) shedBy(ctx context.Context) (movie, backends float64) {
	read := func(addr string) float64 {
		v, _ := readCounter(ctx, "http://"+addr+"/metrics", "movieapp_http_shed_requests_total")
		return v
	}
	for _, p := range st.app.backends {
		backends += read(p.Addr)
	}
	return read(st.app.movie.Addr), backends
}

// curve takes one closed loop of half cfg.Duration at each of
// overloadConnections on st.
func curve(ctx context.Context, cfg Config, st *stack, logf func(string, ...any)) {
	for _, c := range overloadConnections {
		s := Attack(ctx, st.closedC, st.targets, Load{Connections: c, Duration: cfg.Duration / 2})
		st.curve = append(st.curve, s)
		logf("closed loop on %3d connections, protection %s: %8.0f req/s  p99 %s  %s", c, st.name, s.Rate(), ms(s.Quantile(.99)), failures(s))
	}
}

// openRounds takes cfg.Rounds open-loop measurements at each multiple of
// capacity, each stack in turn at each rate.
func openRounds(ctx context.Context, cfg Config, stacks []*stack, capacity float64, logf func(string, ...any)) error {
	for r := 1; r <= cfg.Rounds; r++ {
		for _, m := range overloadMultiples {
			load := OpenLoad{Rate: int(m * capacity), Duration: cfg.Duration, Outstanding: cfg.Outstanding}
			for _, st := range stacks {
				s := st.measureOpen(ctx, m, load)
				logf("open loop %d/%d %.1fx protection %-3s offered %6d/s  goodput %6.0f/s  shed %6.0f/s  not sent %6.0f/s  p99 admitted %s  %d failed %s",
					r, cfg.Rounds, m, st.name, load.Rate, s.Goodput(), s.per(s.Shed), s.per(s.NotSent), ms(s.AdmittedQuantile(.99)), s.Failures, s.FirstFailure)
			}
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	return nil
}

// overloadReport writes the overload run's tables and verdicts.
func overloadReport(ctx context.Context, out io.Writer, cfg Config, on, off *stack, capacity float64, machine, loadBefore string) {
	fmt.Fprintf(out, "\nGET /movie?id=1..5 in turn; two movieapps (2 metadata, 2 rating, 1 movie, each on a Consul of its own), protection on (-max-inflight %s on every service) and off (-max-inflight 0)\n",
		on.maxFlight)
	fmt.Fprintf(out, "machine: %s; load average %s before, %s after\n\n", machine, loadBefore, loadAverage())

	fmt.Fprintf(out, "closed loop by connections, protection off, %s each\n\n", cfg.Duration/2)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "connections\treq/s\tp50\tp99\tfailed\t")
	for i, s := range off.curve {
		fmt.Fprintf(tw, "%d\t%.0f\t%s\t%s\t%d\t\n", overloadConnections[i], s.Rate(), ms(s.Quantile(.5)), ms(s.Quantile(.99)), s.Failures)
	}
	tw.Flush()

	fmt.Fprintf(out, "\nclosed loop on %d connections, %d x %s per system, interleaved\n\n", cfg.Connections, cfg.Rounds, cfg.Duration)
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "protection\treq/s\tright/s\tp50\tp99\tfailed\t")
	for _, st := range []*stack{on, off} {
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%s\t%s\t%d\t\n", st.name, st.closed.Rate(), okRate(st.closed), ms(st.closed.Quantile(.5)), ms(st.closed.Quantile(.99)), st.closed.Failures)
	}
	tw.Flush()
	onOff := fmt.Sprintf("on/off %.2fx", ratio(okRate(on.closed), capacity))
	if sp := spread(on.rates, off.rates); sp != "" {
		onOff += ", " + sp
	}
	fmt.Fprintf(out, "capacity: %.0f req/s (protection off's closed loop; %s)\n", capacity, onOff)

	fmt.Fprintf(out, "\nopen loop, at most %d requests outstanding, %d x %s per rate and system, interleaved; admitted = answered 200 with the right body, latency from when each request was due\n\n",
		cfg.Outstanding, cfg.Rounds, cfg.Duration)
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "protection\toffered/s\tx capacity\tgoodput/s\tgoodput/capacity\tshed/s\tnot sent/s\tp50 admitted\tp99 admitted\tfailed\tCPUs: movie\tbackends\tload gen\t")
	for _, m := range overloadMultiples {
		for _, st := range []*stack{on, off} {
			s, c := st.open[m], st.cpu[m]
			fmt.Fprintf(tw, "%s\t%.0f\t%.1fx\t%.0f\t%.2f\t%.0f\t%.0f\t%s\t%s\t%d\t%s\t%s\t%s\t\n", st.name, m*capacity, m, s.Goodput(), s.Goodput()/capacity,
				s.per(s.Shed), s.per(s.NotSent), ms(s.AdmittedQuantile(.5)), ms(s.AdmittedQuantile(.99)), s.Failures,
				c.cores(c.movie), c.cores(c.backends), c.cores(c.gen))
		}
	}
	tw.Flush()
	mvShed, bShed := on.shedBy(ctx)
	fmt.Fprintf(out, "shed over the run, protection on: %.0f by movie, %.0f by its backends\n", mvShed, bShed)
	fmt.Fprintln(out)
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	for _, st := range []*stack{on, off} {
		top, half := st.open[overloadMultiples[len(overloadMultiples)-1]], st.open[overloadMultiples[0]]
		g := top.Goodput() / capacity
		p := ratio(float64(top.AdmittedQuantile(.99)), float64(half.AdmittedQuantile(.99)))
		if st == on {
			fmt.Fprintf(tw, "protection on: goodput at 2x / capacity\t%.2f\t%s\n", g, verdict(fmt.Sprintf(">= %.2f", targetGoodput), g >= targetGoodput))
			fmt.Fprintf(tw, "protection on: p99 admitted at 2x / at 0.5x\t%.2fx\t%s\n", p, verdict(fmt.Sprintf("<= %dx", targetAdmittedP99), p <= targetAdmittedP99))
			continue
		}
		fmt.Fprintf(tw, "protection off: goodput at 2x / capacity\t%.2f\n", g)
		fmt.Fprintf(tw, "protection off: p99 admitted at 2x / at 0.5x\t%.2fx\n", p)
	}
	tw.Flush()
	for _, st := range []*stack{on, off} {
		for _, m := range overloadMultiples {
			if s := st.open[m]; s.FirstFailure != "" {
				fmt.Fprintf(out, "first failure, protection %s at %.1fx: %s\n", st.name, m, s.FirstFailure)
			}
		}
	}
	fmt.Fprintln(out)
}
