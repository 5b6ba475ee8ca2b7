package compose

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestComposeCluster runs docker-compose.cluster.yml: three Consul servers,
// two client agents standing for two hosts, the services spread over them.
// It waits until the cluster has a leader and every instance passes, checks
// that each instance registered with its own host's agent, then kills the
// Raft leader's container under a steady stream of requests: movie's stale
// reads must carry every request through the election.
func TestComposeCluster(t *testing.T) {
	s := newStack(t, "movieapp-e2e-cluster", "docker-compose.cluster.yml", "e2e/compose/testdata/publish-agent.yml")
	// Host A's client agent, which outlives any server the test kills.
	agentAddr := freePort(t)
	s.env = append(s.env, "AGENT_A_PUBLISH="+agentAddr)

	start := time.Now()
	s.make("images", "MOVIEAPP_TAG="+s.tag)
	t.Logf("make images: %s", time.Since(start).Round(time.Millisecond))

	// Polling starts before `up`, so the times are from the command.
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	leaderAt, firstOK := make(chan time.Time, 1), make(chan time.Time, 1)
	go func() {
		// consul-1, the published UI: up from the start.
		for ctx.Err() == nil {
			if l, err := s.consul.Status().Leader(); err == nil && l != "" {
				leaderAt <- time.Now()
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	go func() {
		for ctx.Err() == nil {
			if a, err := s.getMovie(seededMovie); err == nil && a.Status == http.StatusOK {
				firstOK <- time.Now()
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	start = time.Now()
	s.compose(3*time.Minute, "up", "-d", "--no-build")
	t.Logf("docker-compose up -d returned after %s", time.Since(start).Round(time.Millisecond))
	for _, w := range []struct {
		what string
		ch   chan time.Time
	}{{"a Raft leader", leaderAt}, {"the first 200 from /movie", firstOK}} {
		what, ch := w.what, w.ch
		select {
		case at := <-ch:
			t.Logf("FIGURE docker-compose up -> %s: %s", what, at.Sub(start).Round(time.Millisecond))
		case <-time.After(2 * time.Minute):
			t.Fatalf("no %s within 2m of docker-compose up", what)
		case <-ctx.Done():
			t.Fatalf("no %s before the test's deadline", what)
		}
	}
	s.consul = s.consulClient(agentAddr)

	// 1. Every container healthy, every instance passing, each with its
	// own host's agent.
	s.waitHealthy(11)
	want := map[string]int{"metadata": 2, "rating": 2, "movie": 1}
	s.waitFor(time.Minute, "5 service instances passing", func() bool {
		for svc, n := range want {
			if len(s.entries(svc, true)) != n {
				return false
			}
		}
		return true
	})
	byService := s.running()
	hosts := map[string]string{} // container address -> the node it must be registered on
	for _, svc := range []string{"metadata", "rating", "movie"} {
		var cs []container
		for _, host := range []string{"a", "b"} {
			for _, c := range byService[svc+"-"+host] {
				cs, hosts[c.ip()] = append(cs, c), "host-"+host
			}
		}
		if svc == "movie" {
			for _, c := range byService[svc] {
				cs, hosts[c.ip()] = append(cs, c), "host-a"
			}
		}
		s.checkRegistered(svc, cs)
		for _, e := range s.entries(svc, true) {
			if got, want := e.Node.Node, hosts[e.Service.Address]; got != want {
				t.Errorf("%s at %s registered on node %q, want its host's agent %q", e.Service.ID, e.Service.Address, got, want)
			}
		}
	}
	s.checkMembers()
	leader := s.leader()
	if leader == "" {
		t.Fatal("no Raft leader among the servers")
	}
	t.Logf("Raft leader: %s", leader)
	a, err := s.getMovie(seededMovie)
	if err != nil || a.Status != http.StatusOK || a.Metadata.Title == "" || a.Rating == nil || len(a.Partial) > 0 {
		t.Fatalf("GET /movie?id=%s = %+v, %v; want 200 with metadata and rating", seededMovie, a, err)
	}

	// 2. Kill the leader under load: the survivors elect another, and no
	// request fails meanwhile.
	victim := byService[leader]
	if len(victim) != 1 {
		t.Fatalf("%d running containers for the leader %s, want 1", len(victim), leader)
	}
	load := s.startLoad(2)
	s.waitServed(load, 100)
	atKill, killed := load.served(), time.Now()
	if _, err := docker(s.ctx, 30*time.Second, "kill", victim[0].ID); err != nil {
		t.Fatal(err)
	}
	// Asked of the surviving servers themselves: the client agent may
	// first route the question to the dead one and wait out its RPC
	// timeout, which would time that rather than the election.
	var survivors []container
	for _, name := range []string{"consul-1", "consul-2", "consul-3"} {
		if name != leader {
			survivors = append(survivors, byService[name]...)
		}
	}
	var next string
	elected := s.waitFor(time.Minute, "a new Raft leader", func() bool {
		for _, c := range survivors {
			if next = s.leaderSeenBy(c); next != "" && next != leader {
				return true
			}
		}
		return false
	})
	atElected := load.served()
	t.Logf("FIGURE docker kill of the leader %s -> new leader %s: %s", leader, next, elected.Sub(killed).Round(time.Millisecond))
	viaAgent := s.waitFor(time.Minute, "host A's agent sees the new leader", func() bool { return s.leader() == next })
	t.Logf("FIGURE docker kill -> host A's client agent answers with the new leader: %s", viaAgent.Sub(killed).Round(time.Millisecond))
	s.waitServed(load, atElected+100)
	load.stop(t) // fails the test if any request failed
	t.Logf("FIGURE requests to /movie from the kill to the new leader: %d; %d in all", atElected-atKill, load.served())
	a, err = s.getMovie(seededMovie)
	if err != nil || a.Status != http.StatusOK || a.Rating == nil {
		t.Fatalf("GET /movie?id=%s after the election = %+v, %v; want 200 with a rating", seededMovie, a, err)
	}

	// 3. down -v leaves nothing of the project behind: the volumes are
	// the test's own.
	s.compose(2*time.Minute, "down", "--volumes", "--timeout", "15")
	for _, kind := range []string{"ps -a", "network ls", "volume ls"} {
		args := append(strings.Fields(kind), "-q", "--filter", "label=com.docker.compose.project="+s.project)
		if out, err := docker(s.ctx, 30*time.Second, args...); err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("docker %s after down: %q, %v; want nothing left", kind, out, err)
		}
	}
}

// waitHealthy waits until the project has n containers and every one with a
// healthcheck is healthy (Prometheus has none: its image has nothing to
// probe with, so running is all it can tell).
func (s *stack) waitHealthy(n int) {
	s.t.Helper()
	var states []string
	defer func() {
		if s.t.Failed() {
			s.t.Logf("last container states: %v", states)
		}
	}()
	s.waitFor(2*time.Minute, "every container healthy", func() bool {
		cs := s.containers()
		states = states[:0]
		ok := len(cs) == n
		for _, c := range cs {
			states = append(states, c.Name+" "+c.health())
			healthy := c.health() == "healthy" || c.health() == "none" && noHealthcheck(c.service()) && c.State.Running
			ok = ok && healthy
		}
		return ok
	})
}

// leader returns the node name of the Raft leader, "" while there is none
// (a default read, which only a leader answers).
func (s *stack) leader() string {
	cfg, err := s.consul.Operator().RaftGetConfiguration(nil)
	if err != nil {
		return ""
	}
	for _, srv := range cfg.Servers {
		if srv.Leader {
			return srv.Node
		}
	}
	return ""
}

// leaderSeenBy returns the node name of the leader as the server in
// container c knows it (a stale read: its own Raft state), "" if it knows
// none or does not answer.
func (s *stack) leaderSeenBy(c container) string {
	out, err := docker(s.ctx, 5*time.Second, "exec", c.ID, "consul", "operator", "raft", "list-peers", "-stale")
	if err != nil {
		return ""
	}
	// Node  ID  Address  State  Voter  RaftProtocol  ...
	for line := range strings.Lines(out) {
		if f := strings.Fields(line); len(f) >= 4 && f[3] == "leader" {
			return f[0]
		}
	}
	return ""
}

// checkMembers checks the cluster's shape: three voting servers, and two
// client agents, every one alive in the gossip pool.
func (s *stack) checkMembers() {
	t := s.t
	t.Helper()
	members, err := s.consul.Agent().Members(false)
	if err != nil {
		t.Fatal(err)
	}
	var servers, clients []string
	for _, m := range members {
		if m.Status != 1 { // serf's StatusAlive
			t.Errorf("member %s has status %d, want alive (1)", m.Name, m.Status)
		}
		switch m.Tags["role"] {
		case "consul":
			servers = append(servers, m.Name)
		case "node":
			clients = append(clients, m.Name)
		}
	}
	slices.Sort(servers)
	slices.Sort(clients)
	if want := []string{"consul-1", "consul-2", "consul-3"}; !slices.Equal(servers, want) {
		t.Errorf("servers in consul members: %v, want %v", servers, want)
	}
	if want := []string{"host-a", "host-b"}; !slices.Equal(clients, want) {
		t.Errorf("client agents in consul members: %v, want %v", clients, want)
	}
	cfg, err := s.consul.Operator().RaftGetConfiguration(nil)
	if err != nil {
		t.Fatal(err)
	}
	var voters int
	for _, srv := range cfg.Servers {
		if srv.Voter {
			voters++
		}
	}
	if len(cfg.Servers) != 3 || voters != 3 {
		t.Errorf("Raft configuration: %d servers, %d voters, want 3 and 3", len(cfg.Servers), voters)
	}
	t.Logf("consul members: servers %v, clients %v; %d Raft voters", servers, clients, voters)
}
