// Package consulcluster runs movieapp's real binaries, built with the race
// detector, against a real Consul cluster on loopback (three servers, two
// client agents: internal/consulcluster) and takes the cluster apart under
// steady load on GET /movie: the Raft leader killed, a client agent killed,
// every server restarted in turn, quorum lost. Not one request may fail and
// not one answer may be wrong; how long each change took is logged, never
// asserted.
//
// Two "hosts" share the machine: host A's services use client agent
// client1 (127.0.0.21), host B's use client2 (127.0.0.22), as services on
// two machines each use their machine's agent. Host A runs one metadata, one
// rating and movie; host B one metadata and one rating.
package consulcluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"movieexample.com/internal/chaos"
	"movieexample.com/internal/cluster"
	"movieexample.com/internal/consulcluster"
	"movieexample.com/pkg/discovery"
)

var binDir string // the binaries built by TestMain

func TestMain(m *testing.M) { cluster.TestMain(m, &binDir) }

// Load and deadlines. The deadlines bound waits for changes that take
// seconds; they are not expectations.
const (
	rate   = 100 // requests per second on movie
	hold   = 2 * time.Second
	settle = 30 * time.Second
)

// upstreams are the services movie discovers.
var upstreams = []string{"metadata", "rating"}

// env is the cluster and the five service instances on its two hosts.
type env struct {
	t       *testing.T
	c       *consulcluster.Cluster
	hostA   *consul.Client // through client1
	movie   *cluster.Process
	a, b    map[string]*cluster.Process // each host's metadata and rating
	all     []*cluster.Process
	movieLg *movieLog
}

// setup starts the cluster and the services and waits until movie is ready
// and sees both instances of each upstream.
func setup(t *testing.T) *env {
	t.Helper()
	c := consulcluster.New(t, consulcluster.Options{})
	e := &env{t: t, c: c, hostA: consulClient(t, c.Addr("client1")),
		a: map[string]*cluster.Process{}, b: map[string]*cluster.Process{}}
	// Registered before the services' cleanups, so it runs after them,
	// when every process has exited and written all it had to say.
	t.Cleanup(func() {
		for _, p := range e.all {
			if i := strings.Index(p.Logs(), "WARNING: DATA RACE"); i >= 0 {
				t.Errorf("data race reported by %s %s:\n%s", p.Service, p.InstanceID, p.Logs()[i:min(len(p.Logs()), i+2000)])
			}
		}
	})
	start := func(agent, service string) *cluster.Process {
		p := cluster.StartForTest(t, binDir, service, c.Addr(agent), nil, "-log-level", "info")
		e.all = append(e.all, p)
		return p
	}
	for _, s := range upstreams {
		e.a[s] = start("client1", s)
		e.b[s] = start("client2", s)
	}
	e.movie = start("client1", "movie")
	e.movieLg = &movieLog{p: e.movie}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("movie's log:\n%s", e.movie.Logs())
		}
	})
	e.waitView(time.Time{}, "every instance", func(v map[string][]string) bool {
		return e.sees(v, "metadata", e.a, e.b) && e.sees(v, "rating", e.a, e.b)
	})
	probe := &http.Client{Timeout: 2 * time.Second}
	e.wait("movie ready", func() bool {
		resp, err := probe.Get("http://" + e.movie.Addr + "/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return e
}

// sees reports whether view v of service lists exactly the instances of
// service on the hosts given.
func (e *env) sees(v map[string][]string, service string, hosts ...map[string]*cluster.Process) bool {
	var want []string
	for _, h := range hosts {
		want = append(want, h[service].InstanceID)
	}
	return sameInstances(v[service], want)
}

// wait polls cond until it holds, and fails the test at the deadline. It
// returns how long it took.
func (e *env) wait(what string, cond func() bool) time.Duration {
	e.t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > settle {
			e.t.Fatalf("%s: not within %s", what, settle)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// waitView waits until movie's view, from its log lines at or after since,
// satisfies ok, and returns when movie logged the view that did.
func (e *env) waitView(since time.Time, what string, ok func(map[string][]string) bool) time.Time {
	e.t.Helper()
	var at time.Time
	e.wait("movie's view: "+what, func() bool {
		var found bool
		at, found = e.movieLg.first(since, ok)
		return found
	})
	return at
}

// noViewLost fails the test if movie's view of an upstream, at any time at
// or after since, lacked one of its instances: movie must keep every
// instance through whatever happens to the servers.
func (e *env) noViewLost(since time.Time) {
	e.t.Helper()
	for _, c := range e.movieLg.changes(since) {
		if !sameInstances(c.instances, []string{e.a[c.target].InstanceID, e.b[c.target].InstanceID}) {
			e.t.Errorf("at %s movie's view of %s was %v: an instance dropped out", c.at.Format("15:04:05.000"), c.target, c.instances)
		}
	}
}

// passing reports whether every instance, movie's included, passes in
// Consul, read through host A's agent with Consul's default consistency
// (the leader's view).
func (e *env) passing() bool {
	for _, p := range e.all {
		entries, _, err := e.hostA.Health().Service(p.Service, "", true, nil)
		if err != nil || !slices.ContainsFunc(entries, func(en *consul.ServiceEntry) bool { return en.Service.ID == p.InstanceID }) {
			return false
		}
	}
	return true
}

// report logs the load's figures and fails the test on any failed, wrong
// or degraded answer.
func (e *env) report(r *chaos.Result) {
	e.t.Helper()
	e.t.Logf("load: sent %d, failed %d, wrong %d, degraded %d; latency p50 %s, p99 %s, max %s; load average %s",
		r.Sent, r.Failed, r.Wrong, r.Degraded, ms(r.Latency.P50), ms(r.Latency.P99), ms(r.Latency.Max), r.LoadAvg)
	for _, f := range r.Failures {
		e.t.Logf("failure: %s", f)
	}
	for _, w := range r.Wrongs {
		e.t.Logf("wrong: %s", w)
	}
	for _, p := range r.Problems {
		e.t.Error(p)
	}
	if r.Sent == 0 {
		e.t.Error("the load sent no request")
	}
}

func ms(d time.Duration) string { return d.Round(100 * time.Microsecond).String() }

// registrations watches Consul's catalog, through host A's agent with stale
// reads (any server answers, a leader or not), and counts every answer that
// lacks one of the instances, a registration lost even for a moment, among
// the answers movieapp's discovery would let remove one: an answer from a
// server without a leader it heard from within discovery.MaxStale is
// counted apart (a server shutting down, or just restarted and not yet
// caught up, can answer with an empty catalog).
type registrations struct {
	e    *env
	stop chan struct{}
	done chan struct{}

	mu     sync.Mutex
	reads  int
	losses []string
	// untrusted counts the answers a movieapp reader does not let remove
	// an instance (discovery.MaxStale): from a server that knows no
	// leader, or has not heard from one for longer than MaxStale, as one
	// shutting down or just restarted can be.
	untrusted int
}

func (e *env) watchRegistrations() *registrations {
	r := &registrations{e: e, stop: make(chan struct{}), done: make(chan struct{})}
	go r.loop()
	return r
}

func (r *registrations) loop() {
	defer close(r.done)
	for {
		select {
		case <-r.stop:
			return
		case <-time.After(100 * time.Millisecond):
		}
		for _, p := range r.e.all {
			entries, meta, err := r.e.hostA.Catalog().Service(p.Service, "", &consul.QueryOptions{AllowStale: true})
			if err != nil {
				continue // no server answers: nothing is known, nothing lost
			}
			r.mu.Lock()
			r.reads++
			switch {
			case !meta.KnownLeader || meta.LastContact > discovery.MaxStale:
				r.untrusted++
			case !slices.ContainsFunc(entries, func(s *consul.CatalogService) bool { return s.ServiceID == p.InstanceID }):
				r.losses = append(r.losses, fmt.Sprintf("%s %s missing at %s", p.Service, p.InstanceID, time.Now().Format("15:04:05.000")))
			}
			r.mu.Unlock()
		}
	}
}

// finish stops the watch and returns how many reads it made, how many of
// them were untrusted, and the losses.
func (r *registrations) finish() (reads, untrusted int, losses []string) {
	close(r.stop)
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reads, r.untrusted, r.losses
}

// TestLeaderKilled kills the Raft leader with SIGKILL under load: a new
// leader must be elected, movie must keep every instance (its watch fails
// while there is no leader, and it keeps its last view on errors), and the
// killed server must rejoin as a healthy voter once restarted.
func TestLeaderKilled(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	began := time.Now()
	load := chaos.StartLoad(e.movie.Addr, rate, 1)
	time.Sleep(hold)

	leader, err := e.c.WaitLeader(ctx, settle)
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if err := e.c.Kill(leader.Name); err != nil {
		t.Fatal(err)
	}
	var next *consulcluster.Agent
	e.wait("a new leader", func() bool {
		l, err := e.c.Leader()
		next = l
		return err == nil && l != leader
	})
	t.Logf("%s (leader) killed; %s elected after %s", leader.Name, next.Name, time.Since(killed).Round(time.Millisecond))
	time.Sleep(hold)

	restarted := time.Now()
	if err := e.c.Restart(ctx, leader.Name); err != nil {
		t.Fatal(err)
	}
	if err := e.c.WaitHealthy(ctx, settle); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s restarted; a healthy voter again after %s", leader.Name, time.Since(restarted).Round(time.Millisecond))
	time.Sleep(hold)

	e.report(load.Finish("leader-killed"))
	e.noViewLost(began)
	e.wait("every instance passing", e.passing)
}

// TestClientAgentKilled kills host B's client agent with SIGKILL under load,
// twice. Host B's instances keep running but Consul no longer hears from
// their node, so it marks them critical and movie turns to host A's. Each
// time, once the agent is back, they must be listed again without a restart
// of theirs:
//
//   - restarted on its data directory, the agent restores them from disk;
//   - restarted on an empty one (a rebuilt host), it knows nothing and its
//     first sync removes their entries from the catalog, so their own
//     heartbeat must find them gone (discovery.ErrNotRegistered) and
//     register them again.
func TestClientAgentKilled(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	load := chaos.StartLoad(e.movie.Addr, rate, 2)
	time.Sleep(hold)

	killed := time.Now()
	if err := e.c.Kill("client2"); err != nil {
		t.Fatal(err)
	}
	at := e.waitView(killed, "host B's instances dropped", func(v map[string][]string) bool {
		return e.sees(v, "metadata", e.a) && e.sees(v, "rating", e.a)
	})
	t.Logf("client2 killed; host B's instances out of movie's view after %s", at.Sub(killed).Round(time.Millisecond))
	time.Sleep(hold)

	restarted := time.Now()
	if err := e.c.Restart(ctx, "client2"); err != nil {
		t.Fatal(err)
	}
	e.waitHostB(restarted, "restarted on its data directory")
	time.Sleep(hold)

	killed = time.Now()
	if err := e.c.Kill("client2"); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Wipe("client2"); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Restart(ctx, "client2"); err != nil {
		t.Fatal(err)
	}
	t.Logf("client2 killed and restarted on an empty data directory, %s after the kill", time.Since(killed).Round(time.Millisecond))
	for _, p := range e.b {
		at := e.logged(p, killed, "registry had forgotten this instance; registered again")
		t.Logf("%s on host B registered again by its heartbeat %s after the kill", p.Service, at.Sub(killed).Round(time.Millisecond))
	}
	e.waitHostB(killed, "rebuilt")
	time.Sleep(hold)

	e.report(load.Finish("client-agent-killed"))
	for _, p := range e.b {
		if p.Exited() {
			t.Errorf("%s on host B exited", p.Service)
		}
	}
}

// waitHostB waits until host B's instances are in movie's view and every
// instance passes in Consul, and logs how long each took from since.
func (e *env) waitHostB(since time.Time, how string) {
	e.t.Helper()
	// Not "a change after since": when the agent's first sync removes its
	// instances and their heartbeats register them again quickly enough,
	// movie's blocking query may wake only after both, and its view never
	// changes at all. Back is back, whether or not they were seen leaving.
	var at time.Time
	e.wait("movie's view: host B's instances back", func() bool {
		var ok bool
		at, ok = e.movieLg.now(since, func(v map[string][]string) bool {
			return e.sees(v, "metadata", e.a, e.b) && e.sees(v, "rating", e.a, e.b)
		})
		return ok
	})
	e.wait("every instance passing", e.passing)
	e.t.Logf("client2 %s: host B's instances in movie's view again after %s, every instance passing in Consul after %s",
		how, at.Sub(since).Round(time.Millisecond), time.Since(since).Round(time.Millisecond))
}

// logged waits until p logs msg at or after since, and returns when it did.
func (e *env) logged(p *cluster.Process, since time.Time, msg string) time.Time {
	e.t.Helper()
	var at time.Time
	e.wait(p.Service+" on host B logs "+msg, func() bool {
		for _, line := range p.LogLines(0) {
			var r struct {
				Time time.Time `json:"time"`
				Msg  string    `json:"msg"`
			}
			if json.Unmarshal([]byte(line), &r) == nil && r.Msg == msg && !r.Time.Before(since) {
				at = r.Time
				return true
			}
		}
		return false
	})
	return at
}

// TestRollingServerRestart restarts the three servers one at a time
// (SIGTERM, start on the same data directory, wait until autopilot calls
// every server healthy) under load: no request may fail, and no
// registration may go missing from the catalog at any moment.
func TestRollingServerRestart(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	began := time.Now()
	load := chaos.StartLoad(e.movie.Addr, rate, 3)
	regs := e.watchRegistrations()
	time.Sleep(hold)

	for _, s := range e.c.Servers() {
		leader, _ := e.c.Leader()
		stopped := time.Now()
		if err := e.c.Stop(s.Name); err != nil {
			t.Fatal(err)
		}
		if err := e.c.Restart(ctx, s.Name); err != nil {
			t.Fatal(err)
		}
		if err := e.c.WaitHealthy(ctx, settle); err != nil {
			t.Fatal(err)
		}
		after, _ := e.c.Leader()
		t.Logf("%s (leader: %v) stopped and restarted; all servers healthy after %s; leader now %s",
			s.Name, leader == s, time.Since(stopped).Round(time.Millisecond), name(after))
	}
	time.Sleep(hold)

	e.report(load.Finish("rolling-server-restart"))
	reads, untrusted, losses := regs.finish()
	t.Logf("catalog read %d times (stale reads through client1), %d of them from a server without a recent leader: %d registrations missing from the others", reads, untrusted, len(losses))
	for _, l := range losses[:min(len(losses), 5)] {
		t.Errorf("registration lost: %s", l)
	}
	e.noViewLost(began)
	e.wait("every instance passing", e.passing)
}

// TestQuorumLost stops two of the three servers, the leader among them, for
// 20s under load, then starts them again: while there is no quorum movie
// cannot read Consul and must keep its last view; once a leader is back,
// every instance must be listed as passing again (their heartbeats went to
// their client agents, which kept answering throughout).
func TestQuorumLost(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	began := time.Now()
	load := chaos.StartLoad(e.movie.Addr, rate, 4)
	time.Sleep(hold)

	leader, err := e.c.WaitLeader(ctx, settle)
	if err != nil {
		t.Fatal(err)
	}
	down := []*consulcluster.Agent{leader}
	for _, s := range e.c.Servers() {
		if s != leader && len(down) < 2 {
			down = append(down, s)
		}
	}
	for _, s := range down {
		if err := e.c.Stop(s.Name); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%s (leader) and %s stopped: no quorum for 20s", down[0].Name, down[1].Name)
	time.Sleep(20 * time.Second)

	back := time.Now()
	if err := e.c.Restart(ctx, down[1].Name); err != nil {
		t.Fatal(err)
	}
	l, err := e.c.WaitLeader(ctx, settle)
	if err != nil {
		t.Fatal(err)
	}
	elected := time.Now()
	t.Logf("%s restarted; %s leader after %s", down[1].Name, l.Name, elected.Sub(back).Round(time.Millisecond))
	took := e.wait("every instance passing", e.passing)
	t.Logf("every instance passing in Consul %s after the leader was elected (heartbeat interval %s)",
		took.Round(time.Millisecond), (5 * time.Second / 3).Round(time.Millisecond))

	if err := e.c.Restart(ctx, down[0].Name); err != nil {
		t.Fatal(err)
	}
	if err := e.c.WaitHealthy(ctx, settle); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s restarted; all servers healthy %s after quorum returned", down[0].Name, time.Since(elected).Round(time.Millisecond))
	time.Sleep(hold)

	e.report(load.Finish("quorum-lost"))
	e.noViewLost(began)
}

func name(a *consulcluster.Agent) string {
	if a == nil {
		return "none"
	}
	return a.Name
}

// sameInstances reports whether the instance strings movie logs
// ("rating/<id>@host:port") name exactly the instance IDs in ids.
func sameInstances(instances, ids []string) bool {
	if len(instances) != len(ids) {
		return false
	}
	for _, id := range ids {
		if !slices.ContainsFunc(instances, func(s string) bool { return strings.Contains(s, "/"+id+"@") }) {
			return false
		}
	}
	return true
}

// consulClient is the client a movieapp process would make for the agent
// at addr.
func consulClient(t *testing.T, addr string) *consul.Client {
	t.Helper()
	cc, err := discovery.NewClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	return cc
}

// movieLog reads movie's "discovered instances changed" lines once each.
type movieLog struct {
	p    *cluster.Process
	next int
	recs []viewChange
}

// viewChange is one change of movie's view of an upstream.
type viewChange struct {
	at        time.Time
	target    string
	instances []string
}

func (l *movieLog) refresh() {
	lines := l.p.LogLines(l.next)
	l.next += len(lines)
	for _, line := range lines {
		var r struct {
			Time      time.Time `json:"time"`
			Msg       string    `json:"msg"`
			Target    string    `json:"target"`
			Instances []string  `json:"instances"`
		}
		if json.Unmarshal([]byte(line), &r) != nil || r.Msg != "discovered instances changed" {
			continue
		}
		l.recs = append(l.recs, viewChange{at: r.Time, target: r.Target, instances: r.Instances})
	}
}

// changes returns the changes logged at or after since.
func (l *movieLog) changes(since time.Time) []viewChange {
	l.refresh()
	return slices.DeleteFunc(slices.Clone(l.recs), func(c viewChange) bool { return c.at.Before(since) })
}

// now reports whether movie's view, every upstream's latest, satisfies ok,
// and since when: its last change, or since if that was earlier.
func (l *movieLog) now(since time.Time, ok func(map[string][]string) bool) (time.Time, bool) {
	l.refresh()
	view := map[string][]string{}
	at := since
	for _, c := range l.recs {
		view[c.target] = c.instances
		if c.at.After(at) {
			at = c.at
		}
	}
	return at, ok(view)
}

// first returns the time of the first change at or after since after which
// movie's view, every upstream's latest, satisfies ok.
func (l *movieLog) first(since time.Time, ok func(map[string][]string) bool) (time.Time, bool) {
	l.refresh()
	view := map[string][]string{}
	for _, c := range l.recs {
		view[c.target] = c.instances
		if !c.at.Before(since) && ok(view) {
			return c.at, true
		}
	}
	return time.Time{}, false
}
