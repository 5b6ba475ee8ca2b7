// Package consulscale measures what service discovery costs a real Consul
// cluster as gateways and instances grow: it starts the loopback cluster of
// consulcluster (three servers, client agents standing for hosts), registers
// M instances of one service the way movieapp's services register, starts N
// watchers that each watch the service with blocking queries the way every
// movie gateway does, and changes the set at C changes a second. It measures
// each server's processor time (the leader's apart), the client agents',
// how many blocking queries the servers ran and the watchers woke for, the
// bytes the watchers read, and the time until every watcher saw each change,
// for each read mode: Default (the leader answers), Stale (any server
// answers) and Streaming (each agent subscribes to the servers once and
// answers its watchers from its own copy: Consul's default since 1.10).
//
// cmd/consulscale runs it at chosen sizes; docs/scale.md holds the figures.
package consulscale

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	consul "github.com/hashicorp/consul/api"

	"movieexample.com/internal/consulcluster"
	"movieexample.com/pkg/identity"
)

// Mode is how the watchers read Consul.
type Mode string

// The read modes. Default and Stale run with the agents' streaming backend
// off, so that every blocking query reaches a server; Streaming leaves it on.
const (
	// Default is Consul's default consistency: a follower forwards the
	// read to the leader, which answers every watcher.
	Default Mode = "default"
	// Stale is ?stale: the server the agent talks to answers from its own
	// copy, so the watchers' reads spread over the servers.
	Stale Mode = "stale"
	// Streaming is the agents' streaming backend (use_streaming_backend,
	// on by default): an agent keeps one subscription per service to a
	// server, which sends it each change alone, and answers its local
	// watchers' blocking queries from its materialised copy. Watchers read
	// ?stale, as movie does.
	Streaming Mode = "streaming"
)

// Modes lists every mode, in the order a run measures them.
var Modes = []Mode{Default, Stale, Streaming}

// ParseMode returns the mode called s.
func ParseMode(s string) (Mode, error) {
	if m := Mode(s); slices.Contains(Modes, m) {
		return m, nil
	}
	return "", fmt.Errorf("consulscale: unknown mode %q (want default, stale or streaming)", s)
}

// Size is one point of a run.
type Size struct {
	// Watchers is how many gateways watch the service (N).
	Watchers int
	// Instances is how many instances of it are registered (M).
	Instances int
	// Churn is how many changes a second the set goes through (C): an
	// instance registered or one deregistered, in turn.
	Churn float64
}

// Config is what Run measures.
type Config struct {
	Modes []Mode
	Sizes []Size
	// Duration is how long the set churns at each size.
	Duration time.Duration
	// Agents are the client agents' loopback addresses, one per host;
	// the watchers and the instances spread over them. Nil is
	// consulcluster's two.
	Agents []string
	// Progress, if set, gets a line as each size starts.
	Progress io.Writer
}

// Result is what one size measured in one mode.
type Result struct {
	Mode Mode
	Size
	// Changes is how many changes were made; Missed how many some watcher
	// had not seen when the run ended.
	Changes, Missed int
	// Elapsed is the measured window: the churn, and then the time until
	// every watcher saw the last change.
	Elapsed time.Duration
	// Idle and AgentsIdle are the servers' and the client agents'
	// processor use with nothing changing and no watchers, in cores: Raft,
	// gossip and autopilot.
	Idle, AgentsIdle float64
	// Servers, Leader and AgentsCPU are processor use over Elapsed, in
	// cores: all servers together, the server that led when the churn
	// started, all client agents. Harness is this process's (the watchers'
	// and the churn's).
	Servers, Leader, AgentsCPU, Harness float64
	// LeaderChanged says another server led when the run ended: the
	// leader was too busy to keep its followers' heartbeats going.
	LeaderChanged bool
	// ServerQueries is how many blocking queries the servers ran, Wakeups
	// how many answers the watchers got, Bytes how much they read: each per
	// change.
	ServerQueries, Wakeups, Bytes float64
	// Subscriptions is how many more streams the servers served at the end
	// than with no watchers (their own streams between themselves).
	Subscriptions int
	// SeenP50 and SeenMax are, over the changes, the median and the
	// largest time from a change's request until every watcher saw it.
	SeenP50, SeenMax time.Duration
}

// PerChange is the servers' processor time per change, above their idle
// use; 0 when that is within the noise of idle.
func (r Result) PerChange() time.Duration {
	return perChange(r.Servers, r.Idle, r)
}

// AgentsPerChange is the client agents' processor time per change, above
// their idle use.
func (r Result) AgentsPerChange() time.Duration {
	return perChange(r.AgentsCPU, r.AgentsIdle, r)
}

func perChange(busy, idle float64, r Result) time.Duration {
	if r.Changes == 0 || busy-idle < 0.02 {
		return 0
	}
	return time.Duration((busy - idle) * float64(r.Elapsed) / float64(r.Changes))
}

// service is the watched service; every instance is one of it.
const service = "rating"

// streamingOff turns the agents' streaming backend off, so that a watcher's
// blocking query is a server's blocking query.
const streamingOff = "use_streaming_backend = false\n"

// telemetry keeps the agents' counters for /v1/agent/metrics?format=prometheus.
const telemetry = `telemetry {
  prometheus_retention_time = "1h"
  disable_hostname = true
}
`

// Run measures every size in every mode, with a cluster of its own per mode.
func Run(ctx context.Context, cfg Config) ([]Result, error) {
	if cfg.Duration <= 0 {
		return nil, errors.New("consulscale: Duration must be positive")
	}
	var results []Result
	for _, mode := range cfg.Modes {
		rs, err := runMode(ctx, cfg, mode)
		results = append(results, rs...)
		if err != nil {
			return results, fmt.Errorf("%s: %w", mode, err)
		}
	}
	return results, nil
}

func runMode(ctx context.Context, cfg Config, mode Mode) ([]Result, error) {
	hcl := telemetry
	if mode != Streaming {
		hcl += streamingOff
	}
	c, err := consulcluster.Start(ctx, consulcluster.Options{Clients: cfg.Agents, HCL: hcl})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	h, err := newHarness(c, mode)
	if err != nil {
		return nil, err
	}
	idle, agentsIdle, err := h.idle(ctx, 5*time.Second)
	if err != nil {
		return nil, err
	}
	var results []Result
	for _, size := range cfg.Sizes {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "%s  %-9s N=%d M=%d C=%g/s\n", time.Now().Format("15:04:05"), mode, size.Watchers, size.Instances, size.Churn)
		}
		r, err := h.measure(ctx, size, cfg.Duration)
		if err != nil {
			return results, fmt.Errorf("size of %d watchers, %d instances: %w", size.Watchers, size.Instances, err)
		}
		r.Idle, r.AgentsIdle = idle, agentsIdle
		results = append(results, r)
	}
	return results, nil
}

// harness is one mode's cluster with the instances registered in it.
type harness struct {
	c       *consulcluster.Cluster
	mode    Mode
	agents  []*consul.Client // one per client agent
	addrs   []string         // their HTTP addresses
	http    *http.Client     // for the agents' metrics
	live    []instance       // registered, oldest first
	serial  int
	streams float64 // the servers' streams with no watchers
}

type instance struct {
	id    string
	agent int // index into agents
}

func newHarness(c *consulcluster.Cluster, mode Mode) (*harness, error) {
	h := &harness{c: c, mode: mode, http: &http.Client{Timeout: 10 * time.Second}}
	for _, a := range c.Clients() {
		cl, err := consul.NewClient(&consul.Config{Address: a.HTTPAddr()})
		if err != nil {
			return nil, err
		}
		h.agents = append(h.agents, cl)
		h.addrs = append(h.addrs, a.HTTPAddr())
	}
	if len(h.agents) == 0 {
		return nil, errors.New("consulscale: no client agents")
	}
	return h, nil
}

// idle measures the servers' and the agents' processor use over d with
// nothing to do.
func (h *harness) idle(ctx context.Context, d time.Duration) (servers, agents float64, err error) {
	before, err := h.cpu()
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	select {
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	case <-time.After(d):
	}
	after, err := h.cpu()
	if err != nil {
		return 0, 0, err
	}
	if h.streams, err = h.serverMetric(ctx, "consul_grpc_server_streams"); err != nil {
		return 0, 0, err
	}
	took := time.Since(start)
	return cores(after.servers-before.servers, took), cores(after.agents-before.agents, took), nil
}

// register registers a new instance, as discovery.Register does: its
// identity in the metadata and a TTL check of its own, passing. The TTL is
// long so that nothing has to heartbeat: a heartbeat that changes nothing
// never reaches the servers anyway.
func (h *harness) register(id string, agent int) (instance, error) {
	err := h.agents[agent].Agent().ServiceRegister(&consul.AgentServiceRegistration{
		ID: id, Name: service, Address: "127.0.0.1", Port: 20000 + len(h.live)%40000,
		Meta:  map[string]string{identity.MetaKey: identity.Of(service, id)},
		Check: &consul.AgentServiceCheck{CheckID: "service:" + id, TTL: "1h", Status: consul.HealthPassing},
	})
	if err != nil {
		return instance{}, fmt.Errorf("register %s: %w", id, err)
	}
	return instance{id: id, agent: agent}, nil
}

// nextID names the next instance to register.
func (h *harness) nextID() string {
	h.serial++
	return fmt.Sprintf("%s-scale-%06d", service, h.serial)
}

func (h *harness) deregister(in instance) error {
	if err := h.agents[in.agent].Agent().ServiceDeregister(in.id); err != nil {
		return fmt.Errorf("deregister %s: %w", in.id, err)
	}
	return nil
}

// resize registers or deregisters instances until m are registered, and
// waits until the servers list all of them.
func (h *harness) resize(ctx context.Context, m int) error {
	for len(h.live) < m {
		in, err := h.register(h.nextID(), len(h.live)%len(h.agents))
		if err != nil {
			return err
		}
		h.live = append(h.live, in)
	}
	for len(h.live) > m {
		if err := h.deregister(h.live[0]); err != nil {
			return err
		}
		h.live = h.live[1:]
	}
	deadline := time.Now().Add(time.Minute)
	for {
		entries, _, err := h.agents[0].Health().Service(service, "", true, (&consul.QueryOptions{}).WithContext(ctx))
		if err == nil && len(entries) == m {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the servers list %d instances, not %d (err %v)", len(entries), m, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// usage is processor time used so far.
type usage struct {
	servers, agents, self time.Duration
	each                  map[string]time.Duration // by agent name
	leader                string
}

func (h *harness) cpu() (usage, error) {
	u := usage{each: map[string]time.Duration{}}
	leader, err := h.c.Leader()
	if err != nil {
		return u, err
	}
	u.leader = leader.Name
	for _, a := range h.c.Agents() {
		t, err := a.CPUTime()
		if err != nil {
			return u, err
		}
		u.each[a.Name] = t
		if a.Server {
			u.servers += t
		} else {
			u.agents += t
		}
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return u, err
	}
	u.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return u, nil
}

func cores(d, over time.Duration) float64 { return float64(d) / float64(over) }

// serverMetric sums a metric over the servers, as each one's
// /v1/agent/metrics?format=prometheus gives it.
func (h *harness) serverMetric(ctx context.Context, name string) (float64, error) {
	var sum float64
	for _, s := range h.c.Servers() {
		v, err := h.metric(ctx, s.HTTPAddr(), name)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", s.Name, err)
		}
		sum += v
	}
	return sum, nil
}

// metric returns the sum of every series of the metric called name that
// the agent at addr exports (0 if it exports none yet).
func (h *harness) metric(ctx context.Context, addr, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/agent/metrics?format=prometheus", nil)
	if err != nil {
		return 0, err
	}
	resp, err := h.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("metrics: %s", resp.Status)
	}
	var sum float64
	for _, line := range strings.Split(string(body), "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		f := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, fmt.Errorf("metric %s: %w", name, err)
		}
		sum += v
	}
	return sum, nil
}
