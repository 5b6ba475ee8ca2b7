package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	consul "github.com/hashicorp/consul/api"

	"movieexample.com/internal/cluster"
	"movieexample.com/internal/devconsul"
	"movieexample.com/internal/devjaeger"
	"movieexample.com/metadata"
	"movieexample.com/movie"
	"movieexample.com/pkg/instance"
	"movieexample.com/rating"
)

// ErrFailedRequests means at least one request of the run (warm-up
// included) was not answered 200 with the expected body.
var ErrFailedRequests = errors.New("requests failed")

// Config is one benchmark run.
type Config struct {
	// Connections is the closed loop's number of keep-alive connections.
	Connections int
	// Duration is one measurement of one system; Rounds measurements of
	// each system are taken in turn (floor, movie, lookup, floor, ...), so
	// that whatever else the machine is doing weighs on all three alike.
	Duration time.Duration
	Rounds   int
	// Warmup is the closed-loop load each system gets before the first
	// round: connections opened, pools filled, heaps grown.
	Warmup time.Duration
	// ProfileDir, if set, receives CPU and allocation profiles of movie,
	// one metadata and one rating instance, the floor gateway and one floor
	// backend, and of the variants' movies (and movieapp B's one metadata
	// and one rating), taken during their system's first round.
	ProfileDir string
	// Rate is the fixed-rate load in requests per second; 0 means half the
	// floor's closed-loop rate, what the latency target is about,
	// and a negative rate takes no fixed-rate rounds.
	Rate int
	// GOGC, if set, is the GOGC of every measured process (the services
	// and the reference processes alike, not Consul or the load
	// generator), to see what the garbage collector's pace costs each.
	GOGC string
	// MovieB, if set, is the path of a second movie binary, for an A/B of
	// two builds: it runs next to the movie built from this tree (A) on the
	// same backends and Consul, each round measures it right after A
	// (floor, movie, movie B, lookup, floor, ...), and the report adds its
	// figures and the ratios B/A with their spread over the pairs of rounds.
	MovieB string
	// BuildB, if set, is a directory holding a second build of the three
	// services (movie, metadata and rating, as cluster.Build writes them),
	// for an A/B of two builds of the backends too: movieapp B, a whole
	// second movieapp from it (2 metadata, 2 rating and 1 movie instance) on
	// a Consul of its own, measured right after movie (and movie B) in every
	// round as movie B is, each of its processes reported on its own.
	BuildB string
	// Tracing adds two more movies from this tree, measured right after
	// movie (and movie B, movieapp B) in every round in the same way: one
	// tracing 1% of the requests, one all of them, both exporting to a real
	// Jaeger (bin/jaeger) on loopback. The backends do not trace: the ratios are
	// movie's own cost of its server and attempt spans and their export.
	Tracing bool
	// Outstanding bounds the requests the open loop of RunOverload awaits
	// at once (OpenLoad.Outstanding).
	Outstanding int
	// MaxInFlight is the -max-inflight of every service of RunOverload's
	// protected stack.
	MaxInFlight int
	// Pin, in RunOverload, runs the load generator on a CPU of its own and
	// the services and Consul on the others (cpuSplit).
	Pin bool
}

// DefaultConfig is the full run `make bench` does.
func DefaultConfig() Config {
	return Config{Connections: 64, Duration: 10 * time.Second, Rounds: 3, Warmup: 3 * time.Second, Outstanding: 256, MaxInFlight: instance.DefaultMaxInFlight,
		Pin: true, Tracing: true}
}

// ids are the seeded movies the load asks for in turn.
var ids = []string{"1", "2", "3", "4", "5"}

// want is the answer every system must give for id: the seed's metadata
// and average rating (none for an unrated movie).
func want(id string) movie.Details {
	var d movie.Details
	for _, m := range metadata.Seed {
		if m.ID == id {
			d.Metadata = m
		}
	}
	if agg, err := rating.NewMemory(rating.Seed).Aggregate(context.Background(), rating.Key{Type: rating.RecordTypeMovie, ID: id}); err == nil {
		d.Rating = &agg.Average
	}
	return d
}

// process is one process of a system, for its CPU time, peak RSS and
// allocations.
type process struct {
	name      string
	pid       int
	allocsURL string // see readAllocs; "" for Consul
}

// system is one system under load, with what its measurements gave.
type system struct {
	name    string
	targets []Target
	client  *http.Client
	procs   []process
	// profiled are the processes profiled with -profile: file name ->
	// address.
	profiled map[string]string

	warmup, closed, fixed Sample
	// Each round's throughput (closed loop) and p99 (fixed rate), in
	// order, for the spread of the ratios between systems.
	roundRates []float64
	roundP99s  []float64
	// Over the closed-loop rounds: usage and allocations of each of procs,
	// and the load generator's CPU time.
	procUsage  []usage
	procAllocs []allocs
	genCPU     time.Duration
}

// allocs is what the system's processes allocated over the closed-loop
// rounds.
func (s *system) allocs() allocs {
	var sum allocs
	for _, a := range s.procAllocs {
		sum.objects += a.objects
		sum.bytes += a.bytes
	}
	return sum
}

// cpu is the CPU time of all the system's processes over the closed-loop
// rounds.
func (s *system) cpu() time.Duration {
	var sum time.Duration
	for _, u := range s.procUsage {
		sum += u.cpu
	}
	return sum
}

// Run starts Consul, movieapp's services (and movie B with cfg.MovieB,
// movieapp B on a Consul of its own with cfg.BuildB) and the reference
// systems on loopback, measures them and writes the table to out and
// progress to progress. It returns ErrFailedRequests if any request
// failed, or an error if something could not be started.
func Run(ctx context.Context, cfg Config, out, progress io.Writer) error {
	logf := func(format string, args ...any) { fmt.Fprintf(progress, format+"\n", args...) }
	self, err := os.Executable()
	if err != nil {
		return err
	}
	loadStart := loadAverage()

	logf("starting Consul")
	agent, err := devconsul.Start(ctx, nil)
	if err != nil {
		return err
	}
	defer agent.Stop()

	dir, err := buildServices(ctx, logf)
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	var jaeger *devjaeger.Jaeger
	if cfg.Tracing {
		logf("starting Jaeger")
		if jaeger, err = devjaeger.Start(ctx, nil); err != nil {
			return err
		}
		defer jaeger.Stop()
	}

	serviceEnv, refEnv := measuredEnv(cfg.GOGC)
	app, err := startMovieapp(ctx, cfg, dir, agent.Addr, serviceEnv, logf)
	defer app.stop()
	if err != nil {
		return err
	}
	if jaeger != nil {
		if err := app.startTraced(ctx, dir, agent.Addr, serviceEnv, jaeger, logf, profileFlags(cfg)...); err != nil {
			return err
		}
	}

	logf("starting the reference systems")
	refs, err := startReferences(ctx, self, refEnv, agent)
	defer refs.stop()
	if err != nil {
		return err
	}

	l, err := newLineup(agent, app, refs)
	if err != nil {
		return err
	}
	warmUp(ctx, cfg, l.inTurn(), logf)
	if err := closedLoopRounds(ctx, cfg, l.inTurn(), logf); err != nil {
		return err
	}
	rate, err := fixedRateRounds(ctx, cfg, l, logf)
	if err != nil {
		return err
	}
	report(out, cfg, l, rate, measuredProcesses(l.inTurn()), loadStart)
	return failedRequests(l.inTurn())
}

// buildServices builds the services into a new temporary directory, which
// the caller removes, and returns it.
func buildServices(ctx context.Context, logf func(string, ...any)) (string, error) {
	logf("building the services")
	dir, err := os.MkdirTemp("", "movieapp-bench-")
	if err != nil {
		return "", err
	}
	// Without the race detector: it is the services' speed being measured.
	if err := cluster.Build(ctx, dir, false); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// measuredEnv returns the environment of movieapp's services and that of
// the reference processes (nil: the harness's own).
func measuredEnv(gogc string) (services, refs []string) {
	// DATABASE_URL=memory: the in-memory store, so the benchmark measures
	// the services and not a database shared between instances.
	services = []string{"DATABASE_URL=memory"}
	if gogc != "" {
		services = append(services, "GOGC="+gogc)
		refs = append(os.Environ(), "GOGC="+gogc)
	}
	return services, refs
}

// movieapp is movieapp's processes under test.
type movieapp struct {
	// prefix starts the report's names of its processes: "" for the
	// services built from this tree, "B " for movieapp B's.
	prefix   string
	started  []*cluster.Process // every one, in the order started
	backends []*cluster.Process // metadata-1, metadata-2, rating-1, rating-2
	movie    *cluster.Process
	// variants are the other movies, each measured against movie: movie B
	// (Config.MovieB), movieapp B's (Config.BuildB) and the traced ones
	// (Config.Tracing).
	variants []variant
	jaeger   *devjaeger.Jaeger // nil without Config.Tracing
	// agent is the Consul the services run on if they own it (movieapp
	// B's); nil when the caller does.
	agent *devconsul.Agent
}

// variant is a movie other than the one built from this tree with its
// defaults, under its name in the report.
type variant struct {
	name string
	p    *cluster.Process
	// own is the movieapp whose movie p is, with its own backends and
	// Consul (movieapp B); nil for a movie on the backends of the movie
	// built from this tree.
	own *movieapp
}

// tracedMovies are the traced movies of Config.Tracing: their names and
// their samplers.
var tracedMovies = []struct{ name, sampler, arg string }{
	{"movie traced 1%", "parentbased_traceidratio", "0.01"},
	{"movie traced 100%", "parentbased_always_on", ""},
}

// startTraced starts the traced movies, exporting to jaeger, on the same
// backends, with the flags extra.
func (app *movieapp) startTraced(ctx context.Context, dir, consulAddr string, env []string, jaeger *devjaeger.Jaeger, logf func(string, ...any), extra ...string) error {
	app.jaeger = jaeger
	for _, tm := range tracedMovies {
		logf("starting %s, exporting to Jaeger at %s", tm.name, jaeger.OTLPEndpoint)
		p, err := app.startMovie(ctx, dir, "movie", consulAddr, append(slices.Clone(env),
			"OTEL_EXPORTER_OTLP_ENDPOINT="+jaeger.OTLPEndpoint, "OTEL_TRACES_SAMPLER="+tm.sampler, "OTEL_TRACES_SAMPLER_ARG="+tm.arg), extra...)
		if err != nil {
			return err
		}
		app.variants = append(app.variants, variant{name: tm.name, p: p})
	}
	return nil
}

// startMovieapp starts movieapp's services from dir on the Consul agent at
// consulAddr (startServices), then, if set, movie B from cfg.MovieB on the
// same backends and movieapp B from cfg.BuildB on a Consul of its own, every
// service with env and the flags extra. On error the result holds what was
// started, for the caller to stop.
func startMovieapp(ctx context.Context, cfg Config, dir, consulAddr string, env []string, logf func(string, ...any), extra ...string) (*movieapp, error) {
	logf("starting 2 metadata, 2 rating and 1 movie instance")
	extra = append(extra, profileFlags(cfg)...)
	app, err := startServices(ctx, dir, consulAddr, env, extra...)
	if err != nil {
		return app, err
	}
	if cfg.MovieB != "" {
		logf("starting movie B from %s", cfg.MovieB)
		// Absolute, or a bare file name would be looked for in $PATH.
		path, err := filepath.Abs(cfg.MovieB)
		if err != nil {
			return app, err
		}
		b, err := app.startMovie(ctx, filepath.Dir(path), filepath.Base(path), consulAddr, env, extra...)
		if err != nil {
			return app, err
		}
		app.variants = append(app.variants, variant{name: "movie B", p: b})
	}
	if cfg.BuildB != "" {
		logf("starting movieapp B from %s: Consul, 2 metadata, 2 rating and 1 movie instance", cfg.BuildB)
		b, err := startMovieappB(ctx, cfg.BuildB, env, extra...)
		// Recorded on error too: app.stop stops what b holds.
		app.variants = append(app.variants, variant{name: "movieapp B", p: b.movie, own: b})
		return app, err
	}
	return app, nil
}

// profileFlags are the flags every service needs for cfg.ProfileDir's
// profiles: none without it.
func profileFlags(cfg Config) []string {
	if cfg.ProfileDir == "" {
		return nil
	}
	return []string{"-pprof"}
}

// startMovieappB starts a Consul dev agent of its own and the services from
// dir on it, with env and the flags extra, for movieapp B. On error the
// result holds what was started, for the caller to stop.
func startMovieappB(ctx context.Context, dir string, env []string, extra ...string) (*movieapp, error) {
	// Absolute, or "." would make each binary a bare name, looked for in
	// $PATH.
	dir, err := filepath.Abs(dir)
	if err != nil {
		return &movieapp{}, err
	}
	// A Consul of its own, or each movie would balance over both builds'
	// backends.
	agent, err := devconsul.Start(ctx, nil)
	if err != nil {
		return &movieapp{}, err
	}
	b, err := startServices(ctx, dir, agent.Addr, env, extra...)
	b.prefix, b.agent = "B ", agent
	return b, err
}

// startServices starts two metadata and two rating instances and movie from
// dir on the Consul agent at consulAddr, with env and the flags extra, and
// waits until movie is ready. On error the result holds what was started,
// for the caller to stop.
func startServices(ctx context.Context, dir, consulAddr string, env []string, extra ...string) (*movieapp, error) {
	app := &movieapp{}
	for _, s := range []string{"metadata", "metadata", "rating", "rating"} {
		p, err := cluster.Start(ctx, dir, s, consulAddr, env, extra...)
		if err != nil {
			return app, err
		}
		app.started = append(app.started, p)
		app.backends = append(app.backends, p)
	}
	var err error
	app.movie, err = app.startMovie(ctx, dir, "movie", consulAddr, env, extra...)
	return app, err
}

// startMovie starts the movie binary from dir on the Consul agent at
// consulAddr, with env and the flags extra, adds it to app.started and waits
// until it is ready.
func (app *movieapp) startMovie(ctx context.Context, dir, binary, consulAddr string, env []string, extra ...string) (*cluster.Process, error) {
	p, err := cluster.Start(ctx, dir, binary, consulAddr, env, extra...)
	if err != nil {
		return nil, err
	}
	app.started = append(app.started, p)
	if err := waitReady(ctx, p.Addr); err != nil {
		return nil, fmt.Errorf("%w\n%s", err, p.Logs())
	}
	return p, nil
}

// stop stops the variants' own movieapps, then app's processes in the
// reverse order of their start, then the Consul agent app owns, if any: each
// service deregisters before its Consul goes.
func (app *movieapp) stop() {
	for _, v := range app.variants {
		if v.own != nil {
			v.own.stop()
		}
	}
	for i := len(app.started) - 1; i >= 0; i-- {
		_, _ = app.started[i].Stop()
	}
	if app.agent != nil {
		app.agent.Stop()
	}
}

// references is the reference systems' processes.
type references struct {
	started      []*refProcess       // every one, in the order started
	backends     map[string][]string // Consul service name -> addresses
	backendProcs []process
	floor        *refProcess
	lookup       *refProcess
}

// startReferences starts the floor's backends and gateway, registers the
// backends in Consul and starts the per-request lookup's gateway. On error
// the result holds what was started, for the caller to stop.
func startReferences(ctx context.Context, self string, env []string, agent *devconsul.Agent) (*references, error) {
	refs := &references{backends: map[string][]string{}}
	start := func(role string, args ...string) (*refProcess, error) {
		p, err := startRefProcess(ctx, self, env, role, args...)
		if err == nil {
			refs.started = append(refs.started, p)
		}
		return p, err
	}
	// The floor has movieapp's topology: two instances of each backend.
	for _, b := range []struct{ role, service, name string }{
		{roleMetadata, "bench-metadata", "floor metadata-1"}, {roleMetadata, "bench-metadata", "floor metadata-2"},
		{roleRating, "bench-rating", "floor rating-1"}, {roleRating, "bench-rating", "floor rating-2"},
	} {
		p, err := start(b.role)
		if err != nil {
			return refs, err
		}
		refs.backends[b.service] = append(refs.backends[b.service], p.addr)
		refs.backendProcs = append(refs.backendProcs, p.process(b.name))
	}
	var err error
	refs.floor, err = start(roleFloor, "-metadata", strings.Join(refs.backends["bench-metadata"], ","), "-rating", strings.Join(refs.backends["bench-rating"], ","))
	if err != nil {
		return refs, err
	}
	if err := registerBackends(agent, refs.backends); err != nil {
		return refs, err
	}
	refs.lookup, err = start(roleLookup, "-consul-addr", agent.Addr, "-metadata", "bench-metadata", "-rating", "bench-rating")
	return refs, err
}

// stop stops the processes in the reverse order of their start.
func (refs *references) stop() {
	for i := len(refs.started) - 1; i >= 0; i-- {
		refs.started[i].stop()
	}
}

// lineup is the systems of one run.
type lineup struct {
	floor, movie, lookup *system
	// variants are measured against movie: movie B, movieapp B, the
	// traced movies.
	variants []*system
}

// inTurn returns the systems in the order each round measures them. The
// variants come right after movie, so that each of their rounds is taken
// next to one of movie's, under the same conditions as far as the machine
// allows.
func (l lineup) inTurn() []*system {
	return slices.Concat([]*system{l.floor, l.movie}, l.variants, []*system{l.lookup})
}

// atFixedRate returns the systems the fixed-rate rounds measure, in turn.
func (l lineup) atFixedRate() []*system {
	return slices.Concat([]*system{l.floor, l.movie}, l.variants)
}

// newLineup returns the systems of the run: the floor and the lookup on
// refs, movie and its variants on app, each with the processes that serve
// it.
func newLineup(agent *devconsul.Agent, app *movieapp, refs *references) (lineup, error) {
	consulProc := process{name: "consul", pid: agent.PID()}
	newSystem := func(name, addr string, procs ...process) (*system, error) {
		ts, err := Targets("http://"+addr, ids, want)
		return &system{name: name, targets: ts, client: NewLoadClient(), procs: procs, procUsage: make([]usage, len(procs)), procAllocs: make([]allocs, len(procs))}, err
	}
	var l lineup
	var err error
	if l.floor, err = newSystem("fan-out floor", refs.floor.addr, append([]process{refs.floor.process("floor gateway")}, refs.backendProcs...)...); err != nil {
		return l, err
	}
	serviceProc := func(name string, p *cluster.Process) process {
		return process{name: name, pid: p.PID(), allocsURL: "http://" + p.Addr + "/metrics"}
	}
	// movieSystem returns the system called name: movie p, reported as
	// procName, with the backends and Consul of on, the movieapp it runs on.
	movieSystem := func(name, procName string, p *cluster.Process, on *movieapp, consul process) (*system, error) {
		procs := []process{serviceProc(procName, p)}
		for i, b := range on.backends {
			procs = append(procs, serviceProc(fmt.Sprintf("%s%s-%d", on.prefix, b.Service, i%2+1), b))
		}
		return newSystem(name, p.Addr, append(procs, consul)...)
	}
	if l.movie, err = movieSystem("movie", "movie", app.movie, app, consulProc); err != nil {
		return l, err
	}
	l.movie.profiled = servicesProfiled(app)
	for _, v := range app.variants {
		// A movie on movie's backends is named after its system; movieapp
		// B's processes all are its own, named apart from movie's: "B
		// movie", "B metadata-1", ..., "B consul".
		procName, on, consul := v.name, app, consulProc
		if v.own != nil {
			procName, on, consul = v.own.prefix+"movie", v.own, process{name: v.own.prefix + "consul", pid: v.own.agent.PID()}
		}
		s, err := movieSystem(v.name, procName, v.p, on, consul)
		if err != nil {
			return l, err
		}
		s.profiled = map[string]string{profileName(v.name): v.p.Addr}
		if v.own != nil {
			s.profiled = servicesProfiled(v.own)
		}
		if app.jaeger != nil && strings.HasPrefix(v.name, "movie traced") {
			// What the collector spends on the spans is part of their cost.
			s.procs = append(s.procs, process{name: "jaeger", pid: app.jaeger.PID()})
			s.procUsage, s.procAllocs = make([]usage, len(s.procs)), make([]allocs, len(s.procs))
		}
		l.variants = append(l.variants, s)
	}
	if l.lookup, err = newSystem("per-request lookup", refs.lookup.addr, append([]process{refs.lookup.process("lookup gateway")}, append(refs.backendProcs, consulProc)...)...); err != nil {
		return l, err
	}
	l.floor.profiled = map[string]string{"floor-gateway": refs.floor.addr, "floor-metadata": refs.backends["bench-metadata"][0]}
	return l, nil
}

// servicesProfiled are app's movie, one metadata and one rating instance,
// for -profile: file name -> address.
func servicesProfiled(app *movieapp) map[string]string {
	return map[string]string{
		profileName(app.prefix + "movie"):    app.movie.Addr,
		profileName(app.prefix + "metadata"): app.backends[0].Addr,
		profileName(app.prefix + "rating"):   app.backends[2].Addr,
	}
}

// profileName is the file name of the profiles of what the report calls
// name: "movie traced 1%" -> "movie-traced-1", "B movie" -> "b-movie".
func profileName(name string) string {
	return strings.ToLower(strings.NewReplacer(" ", "-", "%", "").Replace(name))
}

// warmUp gives each system cfg.Warmup of the closed-loop load.
func warmUp(ctx context.Context, cfg Config, systems []*system, logf func(string, ...any)) {
	closed := Load{Connections: cfg.Connections, Duration: cfg.Warmup}
	for _, s := range systems {
		if cfg.Warmup <= 0 {
			break
		}
		logf("warming up %s for %s", s.name, cfg.Warmup)
		s.warmup = Attack(ctx, s.client, s.targets, closed)
		if s.warmup.Failures > 0 {
			logf("  %s", failures(s.warmup))
		}
	}
}

// closedLoopRounds takes cfg.Rounds closed-loop measurements of each
// system, in turn, profiling each system's first with cfg.ProfileDir.
func closedLoopRounds(ctx context.Context, cfg Config, systems []*system, logf func(string, ...any)) error {
	closed := Load{Connections: cfg.Connections, Duration: cfg.Duration}
	for r := 1; r <= cfg.Rounds; r++ {
		for _, s := range systems {
			var profiles func() error
			if cfg.ProfileDir != "" && r == 1 && len(s.profiled) > 0 {
				profiles = profileCPU(ctx, cfg.ProfileDir, cfg.Duration, s.profiled)
			}
			sample := s.measure(ctx, closed)
			logf("round %d/%d %-18s %8.0f req/s  p99 %s  %s", r, cfg.Rounds, s.name, sample.Rate(), ms(sample.Quantile(.99)), failures(sample))
			if profiles != nil {
				if err := profiles(); err != nil {
					return err
				}
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// measure takes one closed-loop measurement of s and adds it to s's
// figures, with what s's processes and the load generator used meanwhile.
func (s *system) measure(ctx context.Context, load Load) Sample {
	allocsBefore := allocsEach(ctx, s.procs)
	before, genBefore := usageEach(s.procs), cpuOf([]process{{pid: os.Getpid()}})
	sample := Attack(ctx, s.client, s.targets, load)
	for i, u := range usageEach(s.procs) {
		s.procUsage[i] = s.procUsage[i].add(u.sub(before[i]))
	}
	s.genCPU += cpuOf([]process{{pid: os.Getpid()}}) - genBefore
	for i, a := range allocsEach(ctx, s.procs) {
		s.procAllocs[i].objects += a.objects - allocsBefore[i].objects
		s.procAllocs[i].bytes += a.bytes - allocsBefore[i].bytes
	}
	s.closed.Add(sample)
	s.roundRates = append(s.roundRates, sample.Rate())
	return sample
}

// fixedRateRounds takes cfg.Rounds fixed-rate measurements of each system
// of l.atFixedRate, in turn, and returns the rate: cfg.Rate, or half the
// floor's closed-loop rate; none are taken at a rate of 0 or below.
func fixedRateRounds(ctx context.Context, cfg Config, l lineup, logf func(string, ...any)) (int, error) {
	fixed := Load{Connections: cfg.Connections, Rate: cfg.Rate, Duration: cfg.Duration}
	if fixed.Rate == 0 {
		fixed.Rate = int(l.floor.closed.Rate() / 2)
	}
	for r := 1; r <= cfg.Rounds && fixed.Rate > 0; r++ {
		for _, s := range l.atFixedRate() {
			sample := Attack(ctx, s.client, s.targets, fixed)
			s.fixed.Add(sample)
			s.roundP99s = append(s.roundP99s, float64(sample.Quantile(.99)))
			logf("fixed rate %d/%d %-18s %8.0f req/s  p99 %s  %s", r, cfg.Rounds, s.name, sample.Rate(), ms(sample.Quantile(.99)), failures(sample))
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
	}
	return fixed.Rate, nil
}

// measuredProcesses returns every process of the systems once, and the
// load generator's.
func measuredProcesses(systems []*system) []process {
	var all []process
	for _, s := range systems {
		for _, p := range s.procs {
			if !containsProc(all, p) {
				all = append(all, p)
			}
		}
	}
	return append(all, process{name: "load generator (this process)", pid: os.Getpid()})
}

// failedRequests returns ErrFailedRequests if any request to the systems
// failed, warm-up included.
func failedRequests(systems []*system) error {
	failed, total := 0, 0
	for _, s := range systems {
		for _, smp := range []Sample{s.warmup, s.closed, s.fixed} {
			failed += smp.Failures
			total += smp.Requests
		}
	}
	if failed > 0 {
		return fmt.Errorf("%w: %d of %d", ErrFailedRequests, failed, total)
	}
	return nil
}

// failures says how many requests of s failed, and the first failure.
func failures(s Sample) string {
	if s.Failures == 0 {
		return "0 failed"
	}
	return fmt.Sprintf("%d of %d failed, first: %s", s.Failures, s.Requests, s.FirstFailure)
}

func containsProc(ps []process, p process) bool {
	for _, q := range ps {
		if q.pid == p.pid {
			return true
		}
	}
	return false
}

// allocsEach reads the allocation counters of each process that has them.
func allocsEach(ctx context.Context, ps []process) []allocs {
	as := make([]allocs, len(ps))
	for i, p := range ps {
		if p.allocsURL != "" {
			as[i], _ = readAllocs(ctx, p.allocsURL) // a process that is gone fails the run anyway
		}
	}
	return as
}

// cpuOf is the CPU time the processes have used so far.
func cpuOf(ps []process) time.Duration {
	var sum time.Duration
	for _, u := range usageEach(ps) {
		sum += u.cpu
	}
	return sum
}

// usageEach is what each process has used so far; a process that is gone
// counts nothing (the run then fails on its requests anyway).
func usageEach(ps []process) []usage {
	us := make([]usage, len(ps))
	for i, p := range ps {
		us[i], _ = readUsage(p.pid)
	}
	return us
}

// waitReady waits until movie's /ready answers 200: it has discovered both
// upstreams.
func waitReady(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/ready", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("movie at %s not ready: %w", addr, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// registerBackends registers the floor's backends in Consul (service name ->
// host:port of each instance) for the per-request lookup to find. With no
// health check of their own they count as passing.
func registerBackends(agent *devconsul.Agent, backends map[string][]string) error {
	client, err := agent.Client("")
	if err != nil {
		return err
	}
	for name, addrs := range backends {
		for i, addr := range addrs {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return err
			}
			p, err := strconv.Atoi(port)
			if err != nil {
				return err
			}
			reg := &consul.AgentServiceRegistration{ID: fmt.Sprintf("%s-%d", name, i+1), Name: name, Address: host, Port: p}
			if err := client.Agent().ServiceRegister(reg); err != nil {
				return fmt.Errorf("register %s: %w", name, err)
			}
		}
	}
	return nil
}

// refProcess is a running reference process (see Serve).
type refProcess struct {
	role string
	addr string
	cmd  *exec.Cmd
	done chan struct{}
}

func (p *refProcess) pid() int { return p.cmd.Process.Pid }

func (p *refProcess) process(name string) process {
	return process{name: name, pid: p.pid(), allocsURL: "http://" + p.addr + "/debug/vars"}
}

// startRefProcess runs `self serve role args...` with env (nil: the
// harness's own) and waits for the address it listens on.
func startRefProcess(ctx context.Context, self string, env []string, role string, args ...string) (*refProcess, error) {
	cmd := exec.Command(self, append([]string{"serve", role}, args...)...)
	cmd.Env = env
	cmd.Stderr = os.Stderr
	// A harness killed mid-way must not leave reference processes running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", role, err)
	}
	p := &refProcess{role: role, cmd: cmd, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		defer close(p.done)
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		addr <- strings.TrimSpace(strings.TrimPrefix(line, "listening "))
		_, _ = io.Copy(io.Discard, stdout)
		_ = cmd.Wait()
	}()
	select {
	case a := <-addr:
		if a == "" {
			p.stop()
			return nil, fmt.Errorf("%s exited at start", role)
		}
		p.addr = a
		return p, nil
	case <-ctx.Done():
		p.stop()
		return nil, ctx.Err()
	case <-time.After(10 * time.Second):
		p.stop()
		return nil, fmt.Errorf("%s did not start listening within 10s", role)
	}
}

// stop sends SIGTERM and waits for the process, killing it after 10s.
func (p *refProcess) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// profileCPU starts CPU and allocation profiles of the given processes
// (file name -> address) for most of one round and returns a function that waits for them
// and writes them to dir.
func profileCPU(ctx context.Context, dir string, d time.Duration, ps map[string]string) func() error {
	secs := max(1, int(d.Seconds())-1)
	errs := make(chan error, len(ps))
	for name, addr := range ps {
		go func() {
			errs <- fetchProfile(ctx, addr, "/debug/pprof/profile?seconds="+strconv.Itoa(secs), filepath.Join(dir, name+".cpu.pprof"))
		}()
		go func() {
			errs <- fetchProfile(ctx, addr, "/debug/pprof/allocs?seconds="+strconv.Itoa(secs), filepath.Join(dir, name+".allocs.pprof"))
		}()
	}
	return func() error {
		var all []error
		for range 2 * len(ps) {
			all = append(all, <-errs)
		}
		return errors.Join(all...)
	}
}

// fetchProfile saves the pprof profile at addr+path into file.
func fetchProfile(ctx context.Context, addr, path, file string) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("profile %s%s: %w", addr, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile %s%s: %s", addr, path, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
