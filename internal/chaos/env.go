// Package chaos is movieapp's churn harness: it starts a real Consul dev
// agent and the real service binaries on loopback, drives GET /movie at a
// steady open-loop rate, and runs scenarios in which instances restart,
// crash, scale, slow down, disappear, and Consul itself goes away, counting
// every request that fails. cmd/chaos runs the full version; the package's
// test runs a short one of every scenario under `make test`.
package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	consul "github.com/hashicorp/consul/api"

	"movieexample.com/internal/cluster"
	"movieexample.com/internal/devconsul"
	"movieexample.com/pkg/routing"
)

// Config sets a run of the scenarios.
type Config struct {
	// Rate is the requests per second sent to movie during a scenario.
	Rate float64
	// Hold is how long the load runs steady before and after each change.
	Hold time.Duration
	// Outage is how long Consul stays down in the Consul outage scenario.
	Outage time.Duration
	// Freeze is how long Consul stays stopped (SIGSTOP) in the Consul
	// freeze scenario; longer than the services' TTL, every TTL timer is
	// overdue when Consul resumes.
	Freeze time.Duration
	// SlowDelay is how long the slow instance holds each answer; above
	// movie's per-attempt timeout, it is an instance that has hung.
	SlowDelay time.Duration
	// SlowerDelay is how much slower than the other the slower rating
	// instance answers in the slower-instance scenario: well under the
	// attempt timeout, so only the balancer can route around it.
	SlowerDelay time.Duration
	// Seed makes the request mix and the choice of victims repeatable.
	Seed uint64
	// MovieArgs are extra flags for movie, e.g. -max-attempts=1 to see a
	// run without retries.
	MovieArgs []string
	// ServiceArgs are extra flags for every metadata and rating instance,
	// e.g. -drain=0 to see a rolling restart without the drain.
	ServiceArgs []string
	// Progress receives a line per step; nil discards them.
	Progress io.Writer
}

// Errors returned by the harness.
var (
	// ErrNotSeen means a change did not take effect within its deadline.
	ErrNotSeen = errors.New("change not seen in time")
)

// Every service process gets these: DATABASE_URL=memory keeps each instance's
// data in its own process, so runs share no file and leave nothing behind.
var serviceEnv = []string{"DATABASE_URL=memory"}

// discardLogger silences net/http's own logging in the proxy.
var discardLogger = log.New(io.Discard, "", 0)

// instance is one running metadata or rating process.
type instance struct {
	*cluster.Process
	advertised string     // the address callers reach: the proxy's when fronted
	proxy      *slowProxy // nil unless the instance is reached through one
	started    time.Time  // when the harness launched it
	label      string     // short name for the report
}

// Env is one running movieapp: a Consul dev agent, metadata and rating
// instances, and one movie gateway the load goes to.
type Env struct {
	cfg    Config
	dir    string
	agent  *devconsul.Agent
	consul *consul.Client
	client *http.Client // the load's
	probe  *http.Client // metrics and readiness

	movie     *cluster.Process
	movieLog  *logTail
	instances map[string][]*instance // by service: the live ones
	counts    *counters
	seq       map[string]int
	frozen    int // the PID of the Consul agent while it is stopped (SIGSTOP), else 0

	mu      sync.Mutex
	started []*cluster.Process // every service process ever started, for Races
	closing sync.Once
}

// ttl is the services' -ttl default, which the harness keeps: how long
// Consul lists an instance as passing after its last heartbeat.
const ttl = 5 * time.Second

// Start builds nothing: dir holds the three service binaries (see
// cluster.Build). It starts Consul, two metadata and two rating instances
// and movie, and waits until movie is ready. Close stops them all.
func Start(ctx context.Context, dir string, cfg Config) (*Env, error) {
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	agent, err := devconsul.Start(ctx, nil)
	if err != nil {
		return nil, err
	}
	cc, err := agent.Client("")
	if err != nil {
		agent.Stop()
		return nil, err
	}
	e := &Env{
		cfg:       cfg,
		dir:       dir,
		agent:     agent,
		consul:    cc,
		client:    newClient(10 * time.Second),
		probe:     &http.Client{Timeout: 2 * time.Second},
		instances: map[string][]*instance{},
		seq:       map[string]int{},
	}
	e.counts = startCounters(e.probe)
	for _, s := range []string{"metadata", "metadata", "rating", "rating"} {
		if _, err := e.startInstance(ctx, s, false); err != nil {
			e.Close()
			return nil, err
		}
	}
	args := append([]string{"-log-level", "info"}, cfg.MovieArgs...)
	e.movie, err = cluster.Start(ctx, dir, "movie", agent.Addr, serviceEnv, args...)
	if err != nil {
		e.Close()
		return nil, err
	}
	e.track(e.movie)
	e.movieLog = &logTail{p: e.movie}
	if err := e.waitReady(ctx, 30*time.Second); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// Close stops every process, movie first so nothing calls a stopped
// upstream, then Consul. A Consul left stopped by a failed scenario is
// resumed first: every process's deregistration would wait on it.
func (e *Env) Close() { e.closing.Do(e.close) }

func (e *Env) close() {
	_ = e.thawConsul()
	if e.movie != nil {
		_, _ = e.movie.Stop()
	}
	var wg sync.WaitGroup
	for _, insts := range e.instances {
		for _, in := range insts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				in.stop()
			}()
		}
	}
	wg.Wait()
	clear(e.instances)
	e.counts.stop()
	e.agent.Stop()
}

// MovieLogs returns what movie logged, for a failed run's report.
func (e *Env) MovieLogs() string {
	if e.movie == nil {
		return ""
	}
	return e.movie.Logs()
}

func (e *Env) progress(format string, args ...any) {
	fmt.Fprintf(e.cfg.Progress, "  %s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// startInstance starts one instance of service, waits until it has
// registered and adds it to the live instances. With slow, it is reached
// through a slowProxy (no delay yet). flags are added to the instance's
// own, after the harness's: "-port", "8080" starts it on that port.
func (e *Env) startInstance(ctx context.Context, service string, slow bool, flags ...string) (*instance, error) {
	in, err := e.launch(ctx, service, slow, flags...)
	if err != nil {
		return nil, err
	}
	e.adopt(in)
	return in, nil
}

// launch starts an instance without touching the Env's state, so it may run
// on another goroutine (while Consul is down, registering takes a while).
func (e *Env) launch(ctx context.Context, service string, slow bool, flags ...string) (*instance, error) {
	var (
		proxy *slowProxy
		extra = append(slices.Clone(e.cfg.ServiceArgs), flags...)
		err   error
	)
	if slow {
		if proxy, err = startSlowProxy(); err != nil {
			return nil, err
		}
		extra = append(extra, "-advertise-addr", proxy.Addr)
	}
	started := time.Now()
	p, err := cluster.Start(ctx, e.dir, service, e.agent.Addr, serviceEnv, extra...)
	if err != nil {
		if proxy != nil {
			proxy.close()
		}
		return nil, err
	}
	e.track(p)
	in := &instance{Process: p, advertised: p.Addr, proxy: proxy, started: started}
	if proxy != nil {
		proxy.setBackend(p.Addr)
		in.advertised = proxy.Addr
	}
	return in, nil
}

// track remembers p for Races; launch may run on another goroutine.
func (e *Env) track(p *cluster.Process) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.started = append(e.started, p)
}

// Races returns, for every service process that reported a data race (a
// binary built with the race detector prints its report in the log the
// harness keeps), its service and instance ID and the report's first lines.
func (e *Env) Races() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var races []string
	for _, p := range e.started {
		logs := p.Logs()
		if i := strings.Index(logs, "WARNING: DATA RACE"); i >= 0 {
			report := logs[i:min(len(logs), i+2000)]
			races = append(races, fmt.Sprintf("%s %s:\n%s", p.Service, p.InstanceID, report))
		}
	}
	return races
}

// adopt names a launched instance and adds it to the live ones.
func (e *Env) adopt(in *instance) {
	e.seq[in.Service]++
	in.label = in.Service + strconv.Itoa(e.seq[in.Service])
	if in.proxy != nil {
		in.label += "(slow)"
	}
	e.instances[in.Service] = append(e.instances[in.Service], in)
	e.counts.watch(in)
	e.progress("%s started on %s (%s)", in.label, in.advertised, in.InstanceID)
}

// stopInstance sends SIGTERM, waits for the instance to exit and drops it
// from the live list.
func (e *Env) stopInstance(in *instance) {
	in.stop()
	e.forget(in)
}

func (in *instance) stop() {
	_, _ = in.Stop()
	if in.proxy != nil {
		in.proxy.close()
	}
}

// forget drops an instance that is gone from the live list.
func (e *Env) forget(in *instance) {
	insts := e.instances[in.Service]
	for i, x := range insts {
		if x == in {
			e.instances[in.Service] = append(insts[:i:i], insts[i+1:]...)
			return
		}
	}
}

// freezeConsul stops the Consul agent's process with SIGSTOP: it keeps its
// sockets and state, so connections to it are accepted by the kernel and
// then wait, as with an agent that hangs (a long GC pause, a stalled disk, a
// paused VM). thawConsul must follow, on every path.
func (e *Env) freezeConsul() error {
	pid := e.agent.PID()
	if pid <= 0 { // stopped; and kill(0) would stop the harness's own group
		return errors.New("freeze consul: the agent is not running")
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return fmt.Errorf("freeze consul: %w", err)
	}
	e.frozen = pid
	return nil
}

// thawConsul resumes a Consul agent stopped by freezeConsul, if it is.
func (e *Env) thawConsul() error {
	if e.frozen == 0 {
		return nil
	}
	if err := syscall.Kill(e.frozen, syscall.SIGCONT); err != nil {
		return fmt.Errorf("resume consul: %w", err)
	}
	e.frozen = 0
	return nil
}

// waitReady waits until movie's /ready answers 200: registered, and both
// upstreams discovered.
func (e *Env) waitReady(ctx context.Context, within time.Duration) error {
	return poll(ctx, within, func() bool {
		resp, err := e.probe.Get("http://" + e.movie.Addr + "/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// movieSees waits until movie's discovered set for service satisfies ok,
// from its "discovered instances changed" log lines after since, and returns
// the time movie logged it.
func (e *Env) movieSees(ctx context.Context, service string, since time.Time, within time.Duration, ok func([]string) bool) (time.Time, error) {
	return e.movieLog.wait(ctx, since, within, func(r logRecord) bool {
		return r.Msg == "discovered instances changed" && r.Target == service && ok(r.Instances)
	})
}

// passing returns the IDs of service's passing instances in Consul.
func (e *Env) passing(service string) (map[string]bool, error) {
	entries, _, err := e.consul.Health().Service(service, "", true, nil)
	if err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	for _, en := range entries {
		ids[en.Service.ID] = true
	}
	return ids, nil
}

// allPassing reports whether every live instance, movie included, is
// passing in Consul.
func (e *Env) allPassing() bool {
	for service, insts := range e.instances {
		ids, err := e.passing(service)
		if err != nil {
			return false
		}
		for _, in := range insts {
			if !ids[in.InstanceID] {
				return false
			}
		}
	}
	ids, err := e.passing("movie")
	return err == nil && ids[e.movie.InstanceID]
}

func contains(set []string, addr string) bool {
	for _, s := range set {
		if s == addr {
			return true
		}
	}
	return false
}

// poll calls cond every 20ms until it is true, within passes or ctx ends.
func poll(ctx context.Context, within time.Duration, cond func() bool) error {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: not within %s", ErrNotSeen, within)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// logRecord is the part of a service's JSON log line the harness reads.
type logRecord struct {
	Time      time.Time `json:"time"`
	Level     string    `json:"level"`
	Msg       string    `json:"msg"`
	Err       string    `json:"err"`
	Target    string    `json:"target"`
	Instances []string  `json:"instances"`
	Instance  string    `json:"instance"`
	To        string    `json:"to"`
}

// addrOf returns the address in the name movie logs an instance by. Movie
// names one either by its address, "127.0.0.1:PORT", or by the identity
// its answers must carry and its address, "rating/rating-<uuid>@127.0.0.1:PORT";
// the harness, which must run against both, compares addresses.
func addrOf(instance string) string {
	instance, _ = routing.Split(instance) // its weight and tags, if any
	if i := strings.LastIndexByte(instance, '@'); i >= 0 {
		return instance[i+1:]
	}
	return instance
}

// logTail reads a process's log lines once each and keeps the records the
// scenarios time their changes by, and every ERROR line.
type logTail struct {
	p    *cluster.Process
	next int
	recs []logRecord
}

var timedMessages = map[string]bool{
	"discovered instances changed":                           true,
	"circuit breaker changed state":                          true,
	"service discovery recovered":                            true,
	"registered":                                             true,
	"registry had forgotten this instance; registered again": true,
}

func (t *logTail) refresh() {
	lines := t.p.LogLines(t.next)
	t.next += len(lines)
	for _, l := range lines {
		// A field of another type than logRecord's (an "err" logged as an
		// object) leaves that field out, not the line: an ERROR line must
		// not go unseen for its shape.
		var r logRecord
		var typeErr *json.UnmarshalTypeError
		if err := json.Unmarshal([]byte(l), &r); err != nil && !errors.As(err, &typeErr) {
			continue
		}
		if !timedMessages[r.Msg] && r.Level != "ERROR" {
			continue
		}
		r.Instance = addrOf(r.Instance)
		for i, in := range r.Instances {
			r.Instances[i] = addrOf(in)
		}
		t.recs = append(t.recs, r)
	}
}

// find returns the first record at or after since that match accepts.
func (t *logTail) find(since time.Time, match func(logRecord) bool) (logRecord, bool) {
	t.refresh()
	for _, r := range t.recs {
		if !r.Time.Before(since) && match(r) {
			return r, true
		}
	}
	return logRecord{}, false
}

// wait waits for find to succeed and returns the record's time.
func (t *logTail) wait(ctx context.Context, since time.Time, within time.Duration, match func(logRecord) bool) (time.Time, error) {
	var at time.Time
	err := poll(ctx, within, func() bool {
		r, ok := t.find(since, match)
		at = r.Time
		return ok
	})
	return at, err
}

// counters polls every watched instance's /metrics and keeps the last count
// of requests it served on its service route, so the split of a scenario's
// traffic survives instances that exit (a crashed one loses at most one
// polling interval).
type counters struct {
	probe *http.Client

	mu    sync.Mutex
	insts []*instance
	last  map[*instance]float64

	quit chan struct{}
	done chan struct{}
}

const countersInterval = 200 * time.Millisecond

func startCounters(probe *http.Client) *counters {
	c := &counters{probe: probe, last: map[*instance]float64{}, quit: make(chan struct{}), done: make(chan struct{})}
	go c.loop()
	return c
}

func (c *counters) watch(in *instance) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.insts = append(c.insts, in)
	c.last[in] = 0
}

func (c *counters) loop() {
	defer close(c.done)
	t := time.NewTicker(countersInterval)
	defer t.Stop()
	for {
		select {
		case <-c.quit:
			return
		case <-t.C:
		}
		c.pollAll()
	}
}

func (c *counters) pollAll() {
	c.mu.Lock()
	insts := append([]*instance(nil), c.insts...)
	c.mu.Unlock()
	for _, in := range insts {
		if in.Exited() {
			continue
		}
		if n, err := c.served(in); err == nil {
			c.mu.Lock()
			c.last[in] = n
			c.mu.Unlock()
		}
	}
}

// served reads the instance's movieapp_http_requests_total for its own
// route, every method and status.
func (c *counters) served(in *instance) (float64, error) {
	byCode, err := requestsByCode(c.probe, in.Addr, "/"+in.Service)
	return sum(byCode), err
}

// requestsByCode reads from the /metrics of the process at addr its
// movieapp_http_requests_total for route, every method, by status code
// ("200", "499"...).
func requestsByCode(probe *http.Client, addr, route string) (map[string]float64, error) {
	resp, err := probe.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	routeLabel := `route="` + route + `"`
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "movieapp_http_requests_total{") || !strings.Contains(line, routeLabel) {
			continue
		}
		_, code, _ := strings.Cut(line, `code="`)
		code, _, _ = strings.Cut(code, `"`)
		f := strings.Fields(line)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		out[code] += v
	}
	return out, sc.Err()
}

// sum adds up the counts of requestsByCode.
func sum(byCode map[string]float64) float64 {
	total := 0.0
	for _, n := range byCode {
		total += n
	}
	return total
}

// snapshot polls now and returns every instance's count.
func (c *counters) snapshot() map[*instance]float64 {
	c.pollAll()
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[*instance]float64, len(c.last))
	for in, n := range c.last {
		out[in] = n
	}
	return out
}

func (c *counters) stop() {
	close(c.quit)
	<-c.done
}
