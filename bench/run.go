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
	"strconv"
	"strings"
	"syscall"
	"time"

	consul "github.com/hashicorp/consul/api"

	"movieexample.com/internal/cluster"
	"movieexample.com/internal/devconsul"
	"movieexample.com/metadata"
	"movieexample.com/movie"
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
	// backend, taken during their system's first round.
	ProfileDir string
	// Rate is the fixed-rate load in requests per second; 0 means half the
	// floor's closed-loop rate, what the latency target is about.
	Rate int
	// GOGC, if set, is the GOGC of every measured process (the services
	// and the reference processes alike, not Consul or the load
	// generator), to see what the garbage collector's pace costs each.
	GOGC string
}

// DefaultConfig is the full run `make bench` does.
func DefaultConfig() Config {
	return Config{Connections: 64, Duration: 10 * time.Second, Rounds: 3, Warmup: 3 * time.Second}
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

// Run starts Consul, movieapp's services and the reference systems on
// loopback, measures them and writes the table to out and progress to
// progress. It returns ErrFailedRequests if any request failed, or an error
// if something could not be started.
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

	logf("building the services")
	dir, err := os.MkdirTemp("", "movieapp-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// Without the race detector: it is the services' speed being measured.
	if err := cluster.Build(ctx, dir, false); err != nil {
		return err
	}

	logf("starting 2 metadata, 2 rating and 1 movie instance")
	// DATABASE_URL=memory: the in-memory store, so the benchmark measures
	// the services and not a database shared between instances.
	env := []string{"DATABASE_URL=memory"}
	var refEnv []string
	if cfg.GOGC != "" {
		env = append(env, "GOGC="+cfg.GOGC)
		refEnv = append(os.Environ(), "GOGC="+cfg.GOGC)
	}
	var extra []string
	if cfg.ProfileDir != "" {
		extra = append(extra, "-pprof")
	}
	var services []*cluster.Process
	defer func() {
		for i := len(services) - 1; i >= 0; i-- {
			_, _ = services[i].Stop()
		}
	}()
	for _, s := range []string{"metadata", "metadata", "rating", "rating", "movie"} {
		p, err := cluster.Start(ctx, dir, s, agent.Addr, env, extra...)
		if err != nil {
			return err
		}
		services = append(services, p)
	}
	mv := services[4]
	if err := waitReady(ctx, mv.Addr); err != nil {
		return fmt.Errorf("%w\n%s", err, mv.Logs())
	}

	logf("starting the reference systems")
	var refs []*refProcess
	defer func() {
		for i := len(refs) - 1; i >= 0; i-- {
			refs[i].stop()
		}
	}()
	startRef := func(role string, args ...string) (*refProcess, error) {
		p, err := startRefProcess(ctx, self, refEnv, role, args...)
		if err == nil {
			refs = append(refs, p)
		}
		return p, err
	}
	// The floor has movieapp's topology: two instances of each backend.
	backends := map[string][]string{} // Consul service name -> addresses
	var backendProcs []process
	for _, b := range []struct{ role, service, name string }{
		{roleMetadata, "bench-metadata", "floor metadata-1"}, {roleMetadata, "bench-metadata", "floor metadata-2"},
		{roleRating, "bench-rating", "floor rating-1"}, {roleRating, "bench-rating", "floor rating-2"},
	} {
		p, err := startRef(b.role)
		if err != nil {
			return err
		}
		backends[b.service] = append(backends[b.service], p.addr)
		backendProcs = append(backendProcs, p.process(b.name))
	}
	floor, err := startRef(roleFloor, "-metadata", strings.Join(backends["bench-metadata"], ","), "-rating", strings.Join(backends["bench-rating"], ","))
	if err != nil {
		return err
	}
	if err := registerBackends(agent, backends); err != nil {
		return err
	}
	lookup, err := startRef(roleLookup, "-consul-addr", agent.Addr, "-metadata", "bench-metadata", "-rating", "bench-rating")
	if err != nil {
		return err
	}

	consulProc := process{name: "consul", pid: agent.PID()}
	newSystem := func(name, addr string, procs ...process) (*system, error) {
		ts, err := Targets("http://"+addr, ids, want)
		return &system{name: name, targets: ts, client: NewLoadClient(), procs: procs, procUsage: make([]usage, len(procs)), procAllocs: make([]allocs, len(procs))}, err
	}
	floorSys, err := newSystem("fan-out floor", floor.addr, append([]process{floor.process("floor gateway")}, backendProcs...)...)
	if err != nil {
		return err
	}
	serviceProc := func(name string, p *cluster.Process) process {
		return process{name: name, pid: p.PID(), allocsURL: "http://" + p.Addr + "/metrics"}
	}
	movieProcs := []process{serviceProc("movie", mv)}
	for i, p := range services[:4] {
		movieProcs = append(movieProcs, serviceProc(fmt.Sprintf("%s-%d", p.Service, i%2+1), p))
	}
	movieSys, err := newSystem("movie", mv.Addr, append(movieProcs, consulProc)...)
	if err != nil {
		return err
	}
	lookupSys, err := newSystem("per-request lookup", lookup.addr, append([]process{lookup.process("lookup gateway")}, append(backendProcs, consulProc)...)...)
	if err != nil {
		return err
	}
	systems := []*system{floorSys, movieSys, lookupSys}
	floorSys.profiled = map[string]string{"floor-gateway": floor.addr, "floor-metadata": backends["bench-metadata"][0]}
	movieSys.profiled = map[string]string{"movie": mv.Addr, "metadata": services[0].Addr, "rating": services[2].Addr}

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

	closed.Duration = cfg.Duration
	for r := 1; r <= cfg.Rounds; r++ {
		for _, s := range systems {
			var profiles func() error
			if cfg.ProfileDir != "" && r == 1 && len(s.profiled) > 0 {
				profiles = profileCPU(ctx, cfg.ProfileDir, cfg.Duration, s.profiled)
			}
			allocsBefore := allocsEach(ctx, s.procs)
			before, genBefore := usageEach(s.procs), cpuOf([]process{{pid: os.Getpid()}})
			sample := Attack(ctx, s.client, s.targets, closed)
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

	fixed := Load{Connections: cfg.Connections, Rate: cfg.Rate, Duration: cfg.Duration}
	if fixed.Rate == 0 {
		fixed.Rate = int(floorSys.closed.Rate() / 2)
	}
	for r := 1; r <= cfg.Rounds && fixed.Rate > 0; r++ {
		for _, s := range []*system{floorSys, movieSys} {
			sample := Attack(ctx, s.client, s.targets, fixed)
			s.fixed.Add(sample)
			s.roundP99s = append(s.roundP99s, float64(sample.Quantile(.99)))
			logf("fixed rate %d/%d %-18s %8.0f req/s  p99 %s  %s", r, cfg.Rounds, s.name, sample.Rate(), ms(sample.Quantile(.99)), failures(sample))
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}

	var all []process
	for _, s := range systems {
		for _, p := range s.procs {
			if !containsProc(all, p) {
				all = append(all, p)
			}
		}
	}
	all = append(all, process{name: "load generator (this process)", pid: os.Getpid()})
	report(out, cfg, systems, fixed.Rate, all, loadStart)

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
