// Package compose tests movieapp's docker-compose setup end to end against
// the real Docker engine, the way a user meets it: images built with `make
// images` (pulling nothing), the stack brought up scaled, Consul's view of
// it, a container stopped gracefully and another killed under a steady
// stream of requests, and `docker-compose down`.
//
// Without a Docker engine the test skips, loudly; with CI=true it fails.
package compose

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	consul "github.com/hashicorp/consul/api"
)

// ports are the services' ports inside their containers.
var ports = map[string]int{"metadata": 8081, "rating": 8082, "movie": 8083}

// seededMovie is a movie with metadata and ratings in the seed data.
const seededMovie = "1"

func TestCompose(t *testing.T) {
	s := newStack(t, "movieapp-e2e", "docker-compose.yml")

	// 1. Build the images offline and bring the stack up, scaled.
	start := time.Now()
	s.make("images", "MOVIEAPP_TAG="+s.tag)
	t.Logf("make images: %s", time.Since(start).Round(time.Millisecond))
	for _, name := range []string{"metadata", "rating", "movie"} {
		s.checkImage(name)
	}

	// Polling starts before `up`, so the time to the first 200 is the
	// user's: from the command to the answer.
	firstOK := make(chan time.Time, 1)
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
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
	s.compose(3*time.Minute, "up", "-d", "--no-build", "--scale", "metadata=2", "--scale", "rating=2")
	t.Logf("docker-compose up -d returned after %s", time.Since(start).Round(time.Millisecond))
	select {
	case at := <-firstOK:
		t.Logf("FIGURE docker-compose up -> first 200 from /movie: %s", at.Sub(start).Round(time.Millisecond))
	case <-time.After(2 * time.Minute):
		t.Fatal("GET /movie did not answer 200 within 2m of docker-compose up")
	case <-ctx.Done():
		t.Fatal("GET /movie did not answer 200 before the test's deadline")
	}
	var states []string // for the failure message
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last container states: %v", states)
		}
	})
	s.waitFor(2*time.Minute, "every container healthy", func() bool {
		cs := s.containers()
		states = states[:0]
		for _, c := range cs {
			states = append(states, fmt.Sprintf("%s running=%v health=%s", c.Name, c.State.Running, c.health()))
		}
		if len(cs) != 8 {
			return false
		}
		for _, c := range cs {
			switch c.health() {
			case "healthy":
			case "none":
				// Prometheus and Jaeger: their images have no shell or
				// probe to run a healthcheck with, so running is all they
				// can tell.
				if !noHealthcheck(c.service()) || !c.State.Running {
					return false
				}
			default:
				return false
			}
		}
		return true
	})
	t.Logf("all 8 containers up (6 with a healthcheck healthy) %s after up", time.Since(start).Round(time.Millisecond))

	// 2. Consul lists every instance at its own container address.
	byService := s.running()
	for svc, want := range map[string]int{"metadata": 2, "rating": 2, "movie": 1} {
		if got := len(byService[svc]); got != want {
			t.Fatalf("%s: %d containers running, want %d", svc, got, want)
		}
		s.checkRegistered(svc, byService[svc])
	}
	for _, svc := range []string{"metadata", "rating"} {
		for _, c := range byService[svc] {
			if c.publishesPorts() {
				t.Errorf("scaled %s container %s publishes a host port: %v", svc, c.Name, c.NetworkSettings.Ports)
			}
		}
	}
	if resp, err := client.Get("http://" + s.consulAddr + "/ui/"); err != nil {
		t.Errorf("Consul UI: %v", err)
	} else if resp.Body.Close(); resp.StatusCode != http.StatusOK {
		t.Errorf("Consul UI: %s, want 200", resp.Status)
	}
	a, err := s.getMovie(seededMovie)
	if err != nil || a.Status != http.StatusOK || a.Metadata.ID != seededMovie || a.Metadata.Title == "" || a.Rating == nil || len(a.Partial) > 0 {
		t.Fatalf("GET /movie?id=%s = %+v, %v; want 200 with metadata and rating", seededMovie, a, err)
	}
	s.checkTracesInJaeger()

	// 3. Stopping a rating container under load deregisters it at once and
	// costs no request. Compose stops whole services, so the one container
	// is stopped with docker, as compose would (SIGTERM, then SIGKILL after
	// the service's stop_grace_period).
	{
		victim := byService["rating"][0]
		id := s.instanceAt("rating", victim.ip())
		load := s.startLoad(2)
		s.waitServed(load, 100)
		stopped := time.Now()
		stopErr := make(chan error, 1)
		go func() {
			_, err := docker(s.ctx, 30*time.Second, "stop", "--time", "15", victim.ID)
			stopErr <- err
		}()
		var leftPassing time.Duration
		deregistered := s.waitFor(20*time.Second, "stopped rating instance deregistered", func() bool {
			if leftPassing == 0 && !slices.Contains(s.instanceIDs("rating", true), id) {
				leftPassing = time.Since(stopped)
			}
			return !slices.Contains(s.instanceIDs("rating", false), id)
		})
		t.Logf("FIGURE docker stop -> out of Consul's passing list: %s; gone from the catalog: %s",
			leftPassing.Round(time.Millisecond), deregistered.Sub(stopped).Round(time.Millisecond))
		if err := <-stopErr; err != nil {
			t.Fatal(err)
		}
		t.Logf("docker stop returned after %s", time.Since(stopped).Round(time.Millisecond))
		if c := s.inspect(victim.ID); c.State.Running || c.State.ExitCode != 0 {
			t.Errorf("stopped rating container: running=%v exit code %d, want exited with 0", c.State.Running, c.State.ExitCode)
		}
		s.waitFor(10*time.Second, "movie discovers one rating instance", func() bool {
			return s.movieMetric(`movieapp_gateway_upstream_instances{target="rating"}`) == 1
		})
		s.waitServed(load, load.served()+100)
		load.stop(t)
	}

	// 4. A killed metadata container cannot deregister: its TTL lapses, movie
	// stops choosing it, and meanwhile retries and the breaker keep every
	// answer a 200.
	victim := byService["metadata"][0]
	killedID := s.instanceAt("metadata", victim.ip())
	{
		load := s.startLoad(2)
		s.waitServed(load, 100)
		killed := time.Now()
		if _, err := docker(s.ctx, 30*time.Second, "kill", victim.ID); err != nil {
			t.Fatal(err)
		}
		critical := s.waitFor(30*time.Second, "killed metadata instance critical in Consul", func() bool {
			return s.status("metadata", killedID) == consul.HealthCritical
		})
		t.Logf("FIGURE docker kill -> critical in Consul: %s (TTL 5s)", critical.Sub(killed).Round(time.Millisecond))
		s.waitFor(10*time.Second, "movie discovers one metadata instance", func() bool {
			return s.movieMetric(`movieapp_gateway_upstream_instances{target="metadata"}`) == 1
		})
		s.waitServed(load, load.served()+100)
		load.stop(t)
		// How movie got around the dead instance, to read when a request
		// did fail.
		for _, m := range []string{
			`movieapp_gateway_upstream_retries_total{target="metadata"}`,
			`movieapp_gateway_upstream_retry_budget_exhausted_total{target="metadata"}`,
			`movieapp_gateway_upstream_ejections_total{target="metadata"}`,
			`movieapp_gateway_upstream_requests_total{outcome="unavailable",target="metadata"}`,
		} {
			t.Logf("%s %v", m, s.movieMetric(m))
		}
	}

	// The replicas of rating share one store that outlives a restart.
	s.checkSharedStore()
	// A canary rollout as the README runs it.
	s.checkCanary()

	// 5. down stops every running instance, which deregisters before Consul
	// itself stops, and leaves nothing behind. The killed instance stays
	// listed (critical) until Consul reaps it, as any crashed one would.
	live := map[string]bool{}
	for svc := range ports {
		for _, id := range s.instanceIDs(svc, true) {
			live[id] = true
		}
	}
	w := s.watchChecks()
	s.compose(2*time.Minute, "down", "--volumes", "--timeout", "15")
	last := w.stop(t)
	for id := range live {
		if !w.seen[id] {
			t.Errorf("the Consul watch never saw live instance %s", id)
		}
		if last[id] {
			t.Errorf("instance %s still registered when Consul stopped", id)
		}
	}
	for id := range last {
		if id != killedID {
			t.Errorf("unexpected instance %s registered when Consul stopped", id)
		}
	}
	for _, kind := range []string{"ps -a", "network ls", "volume ls"} {
		args := append(strings.Fields(kind), "-q", "--filter", "label=com.docker.compose.project="+s.project)
		if out, err := docker(s.ctx, 30*time.Second, args...); err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("docker %s after down: %q, %v; want nothing left", kind, out, err)
		}
	}
}

// stack is one compose project of the test: its own project name, image tag
// and published ports, so that it runs beside anything else on the engine.
type stack struct {
	t          *testing.T
	ctx        context.Context // ends early enough for the cleanup to run
	root       string          // repository root, where docker-compose.yml is
	files      []string        // the compose files, relative to root
	project    string          // compose project name
	tag        string          // image tag of the images built for the test
	command    []string        // docker-compose, or docker compose
	env        []string
	movieAddr  string // host:port of movie, published on 127.0.0.1
	consulAddr string // host:port of Consul's HTTP API and UI, likewise
	consul     *consul.Client
}

// newStack checks for a Docker engine and docker-compose, and registers the
// cleanup that removes everything the test creates, whatever happens. The
// project is named prefix-<random>, and runs the compose files given
// (relative to the repository root, applied in order).
func newStack(t *testing.T, prefix string, files ...string) *stack {
	t.Helper()
	requireDocker(t)
	command := composeCommand(t)
	_, file, _, _ := runtime.Caller(0)
	suffix := randomHex(4)
	// go test kills a test that overruns -timeout without running its
	// cleanups, which would leave the stack running: stop short of it.
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	if deadline, ok := t.Deadline(); ok {
		margin := min(3*time.Minute, time.Until(deadline)/3)
		ctx, cancel = context.WithDeadline(ctx, deadline.Add(-margin))
	}
	s := &stack{
		t:       t,
		ctx:     ctx,
		root:    filepath.Join(filepath.Dir(file), "..", ".."),
		files:   files,
		project: prefix + "-" + suffix,
		tag:     "e2e-" + suffix,
		command: command,
	}
	// Free ports on loopback, so runs never collide with each other or
	// with a stack already up on 8083 and 8500.
	s.movieAddr = freePort(t)
	s.consulAddr = freePort(t)
	s.consul = s.consulClient(s.consulAddr)
	s.env = append(os.Environ(),
		"MOVIEAPP_TAG="+s.tag,
		"CONSUL_IMAGE=movieapp/consul:"+s.tag,
		"PROMETHEUS_IMAGE=movieapp/prometheus:"+s.tag,
		"PROMETHEUS_PUBLISH=127.0.0.1:", // a free port
		"JAEGER_IMAGE=movieapp/jaeger:"+s.tag,
		"JAEGER_PUBLISH=127.0.0.1:",
		"MOVIE_PUBLISH="+s.movieAddr,
		"CONSUL_PUBLISH="+s.consulAddr,
	)
	t.Logf("compose project %s (left behind only if the test process is killed: docker-compose -p %s down -v)", s.project, s.project)
	t.Cleanup(func() {
		cancel()
		ctx := context.Background()
		if t.Failed() {
			if out, err := s.run(ctx, time.Minute, "logs", "--no-color", "--tail", "100"); err == nil {
				t.Logf("docker-compose logs:\n%s", out)
			}
		}
		if out, err := s.run(ctx, 2*time.Minute, "down", "--volumes", "--remove-orphans", "--timeout", "15"); err != nil {
			t.Errorf("cleanup: down: %v\n%s", err, out)
		}
		// Only the test's own tags: the images users built stay.
		for _, name := range []string{"metadata", "rating", "movie", "consul", "prometheus", "jaeger"} {
			_, _ = docker(ctx, time.Minute, "rmi", "movieapp/"+name+":"+s.tag)
		}
	})
	return s
}

// requireDocker skips the test when no Docker engine answers, unless it runs
// in CI, where a missing engine is a failure.
func requireDocker(t *testing.T) {
	t.Helper()
	out, err := docker(context.Background(), 30*time.Second, "info", "--format", "{{.ServerVersion}}")
	if err == nil {
		t.Logf("Docker engine %s", strings.TrimSpace(out))
		return
	}
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		t.Fatalf("CI=true and no Docker engine answers: %v", err)
	}
	t.Skipf("\n%s\nSKIPPED: no Docker engine answers (%v):\nthe docker-compose end-to-end test did NOT run.\n%s",
		strings.Repeat("!", 72), err, strings.Repeat("!", 72))
}

// composeCommand returns docker-compose (v1) when installed, else the
// `docker compose` plugin (v2).
func composeCommand(t *testing.T) []string {
	t.Helper()
	if p, err := exec.LookPath("docker-compose"); err == nil {
		return []string{p}
	}
	if _, err := docker(context.Background(), 30*time.Second, "compose", "version"); err == nil {
		return []string{"docker", "compose"}
	}
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		t.Fatal("CI=true and neither docker-compose nor `docker compose` is installed")
	}
	t.Skipf("\n%s\nSKIPPED: neither docker-compose nor `docker compose` is installed:\nthe docker-compose end-to-end test did NOT run.\n%s",
		strings.Repeat("!", 72), strings.Repeat("!", 72))
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// docker runs the docker CLI and returns its standard output; the error
// carries its standard error.
func docker(ctx context.Context, timeout time.Duration, args ...string) (string, error) {
	return run(ctx, timeout, "", nil, "docker", args...)
}

func run(ctx context.Context, timeout time.Duration, dir string, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env = dir, env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// run runs a compose command in the test's project.
func (s *stack) run(ctx context.Context, timeout time.Duration, args ...string) (string, error) {
	return s.runWith(ctx, timeout, "", args...)
}

// runWith runs a compose command with override (a compose file applied over
// the stack's own) unless it is empty.
func (s *stack) runWith(ctx context.Context, timeout time.Duration, override string, args ...string) (string, error) {
	var files []string
	for _, f := range s.files {
		files = append(files, "-f", filepath.Join(s.root, f))
	}
	if override != "" {
		files = append(files, "-f", override)
	}
	full := slices.Concat(s.command[1:], []string{"-p", s.project}, files, args)
	return run(ctx, timeout, s.root, s.env, s.command[0], full...)
}

// checkSharedStore writes a rating through one rating replica and reads it
// back through the other, through movie, and again after `restart rating`:
// the replicas share the SQLite file on the service's named volume. The
// replicas are recreated with publish-rating.yml to reach each one directly
// on a loopback port.
func (s *stack) checkSharedStore() {
	t := s.t
	t.Helper()
	over := filepath.Join(s.root, "e2e", "compose", "testdata", "publish-rating.yml")
	before := s.instanceIDs("rating", true)
	s.mustWith(over, 3*time.Minute, "up", "-d", "--no-build", "--no-deps", "--scale", "rating=2", "rating")
	s.waitFor(2*time.Minute, "two new rating instances passing", func() bool {
		ids := s.instanceIDs("rating", true)
		return len(ids) == 2 && !slices.Contains(ids, before[0]) && !slices.Contains(ids, before[len(before)-1])
	})
	const movieID = "5" // seeded without ratings
	addrs := s.ratingAddrs(over)
	if got := s.rating(http.MethodPut, addrs[0], "id="+movieID+"&type=movie&userId=compose-e2e&value=2"); got != 2 {
		t.Fatalf("PUT through %s: rating %v, want 2", addrs[0], got)
	}
	for _, addr := range addrs {
		if got := s.rating(http.MethodGet, addr, "id="+movieID+"&type=movie"); got != 2 {
			t.Errorf("GET through %s after a PUT through %s: rating %v, want 2", addr, addrs[0], got)
		}
	}
	s.waitFor(30*time.Second, "movie reaches both new rating instances", func() bool {
		return s.movieMetric(`movieapp_gateway_upstream_instances{target="rating"}`) == 2
	})
	for i := range 20 {
		a, err := s.getMovie(movieID)
		if err != nil || a.Rating == nil || *a.Rating != 2 {
			t.Fatalf("GET /movie?id=%s #%d = %+v, %v; want rating 2 whichever replica answers", movieID, i, a, err)
		}
	}

	ids := s.instanceIDs("rating", true)
	s.mustWith(over, 2*time.Minute, "restart", "rating")
	s.waitFor(2*time.Minute, "two rating instances passing after restart", func() bool {
		now := s.instanceIDs("rating", true)
		return len(now) == 2 && !slices.Contains(now, ids[0]) && !slices.Contains(now, ids[1])
	})
	for _, addr := range s.ratingAddrs(over) {
		if got := s.rating(http.MethodGet, addr, "id="+movieID+"&type=movie"); got != 2 {
			t.Errorf("GET through %s after restart: rating %v, want 2 (the data must survive)", addr, got)
		}
	}
	t.Logf("a rating written through one replica was read through both, through movie and after a restart")
}

// mustWith runs a compose command with override and fails the test if it fails.
func (s *stack) mustWith(override string, timeout time.Duration, args ...string) string {
	s.t.Helper()
	out, err := s.runWith(s.ctx, timeout, override, args...)
	if err != nil {
		s.t.Fatalf("%v\n%s", err, out)
	}
	return out
}

// ratingAddrs returns the loopback address each rating replica is published
// on under publish-rating.yml.
func (s *stack) ratingAddrs(override string) []string {
	s.t.Helper()
	var addrs []string
	for i := 1; i <= 2; i++ {
		out := strings.TrimSpace(s.mustWith(override, 30*time.Second, "port", "--index="+strconv.Itoa(i), "rating", "8082"))
		if !strings.HasPrefix(out, "127.0.0.1:") {
			s.t.Fatalf("rating replica %d published on %q, want a loopback port", i, out)
		}
		addrs = append(addrs, out)
	}
	return addrs
}

// rating sends one request to a rating replica and returns the average it
// answers, failing the test on anything but a 200.
func (s *stack) rating(method, addr, query string) float64 {
	s.t.Helper()
	req, err := http.NewRequestWithContext(s.ctx, method, "http://"+addr+"/rating?"+query, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, addr, err)
	}
	defer resp.Body.Close()
	var body struct {
		Rating float64 `json:"rating"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
		s.t.Fatalf("%s %s/rating?%s: %s, %v", method, addr, query, resp.Status, err)
	}
	return body.Rating
}

// compose runs a compose command and fails the test if it fails.
func (s *stack) compose(timeout time.Duration, args ...string) string {
	s.t.Helper()
	out, err := s.run(s.ctx, timeout, args...)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// make runs a Makefile target at the repository root.
func (s *stack) make(args ...string) {
	s.t.Helper()
	if out, err := run(s.ctx, 10*time.Minute, s.root, s.env, "make", args...); err != nil {
		s.t.Fatalf("%v\n%s", err, out)
	}
}

// checkImage checks what the issue asks of a service image: small, and not
// run as root.
func (s *stack) checkImage(name string) {
	s.t.Helper()
	out, err := docker(s.ctx, 30*time.Second, "image", "inspect", "--format", "{{.Size}} {{.Config.User}}", "movieapp/"+name+":"+s.tag)
	if err != nil {
		s.t.Fatal(err)
	}
	sizeField, user, _ := strings.Cut(strings.TrimSpace(out), " ")
	size, _ := strconv.ParseInt(sizeField, 10, 64)
	s.t.Logf("FIGURE image movieapp/%s: %.1f MB, user %q", name, float64(size)/1e6, user)
	if size <= 0 || size >= 25e6 {
		s.t.Errorf("image movieapp/%s is %d bytes, want under 25 MB", name, size)
	}
	if uid, _, _ := strings.Cut(user, ":"); uid == "" || uid == "0" || uid == "root" {
		s.t.Errorf("image movieapp/%s runs as %q, want an unprivileged user", name, user)
	}
}

func (s *stack) consulClient(addr string) *consul.Client {
	s.t.Helper()
	cfg := consul.DefaultConfig()
	cfg.Address = addr
	cfg.HttpClient = &http.Client{Timeout: 15 * time.Second}
	c, err := consul.NewClient(cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	return c
}

// freePort returns a loopback address that nothing listens on.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// container is what the test reads from docker inspect.
type container struct {
	ID     string
	Name   string
	Config struct {
		Labels map[string]string
	}
	State struct {
		Running  bool
		ExitCode int
		Health   *struct{ Status string }
	}
	NetworkSettings struct {
		Networks map[string]struct{ IPAddress string }
		Ports    map[string][]struct{ HostIP, HostPort string }
	}
}

func (c container) service() string { return c.Config.Labels["com.docker.compose.service"] }

func (c container) health() string {
	if c.State.Health == nil {
		return "none"
	}
	return c.State.Health.Status
}

// ip returns the container's address on the project network (its only one).
func (c container) ip() string {
	for _, n := range c.NetworkSettings.Networks {
		return n.IPAddress
	}
	return ""
}

func (c container) publishesPorts() bool {
	for _, bindings := range c.NetworkSettings.Ports {
		if len(bindings) > 0 {
			return true
		}
	}
	return false
}

// containers returns the project's containers, running or not.
func (s *stack) containers() []container {
	s.t.Helper()
	ids := strings.Fields(s.compose(30*time.Second, "ps", "-q"))
	if len(ids) == 0 {
		return nil
	}
	out, err := docker(s.ctx, 30*time.Second, append([]string{"inspect"}, ids...)...)
	if err != nil {
		s.t.Fatal(err)
	}
	var cs []container
	if err := json.Unmarshal([]byte(out), &cs); err != nil {
		s.t.Fatal(err)
	}
	return cs
}

func (s *stack) inspect(id string) container {
	s.t.Helper()
	out, err := docker(s.ctx, 30*time.Second, "inspect", id)
	if err != nil {
		s.t.Fatal(err)
	}
	var cs []container
	if err := json.Unmarshal([]byte(out), &cs); err != nil || len(cs) != 1 {
		s.t.Fatalf("docker inspect %s: %v", id, err)
	}
	return cs[0]
}

// running returns the running containers by service.
func (s *stack) running() map[string][]container {
	by := map[string][]container{}
	for _, c := range s.containers() {
		if c.State.Running {
			by[c.service()] = append(by[c.service()], c)
		}
	}
	return by
}

// checkRegistered checks that Consul lists exactly the service's
// containers as passing, each once, at its container address and the
// service's port, under a "<service>-<uuid v4>" ID.
func (s *stack) checkRegistered(service string, cs []container) {
	s.t.Helper()
	var got, want []string
	for _, e := range s.entries(service, true) {
		rest, ok := strings.CutPrefix(e.Service.ID, service+"-")
		if u, err := uuid.Parse(rest); !ok || err != nil || u.Version() != 4 || len(rest) != 36 {
			s.t.Errorf("%s instance ID %q, want %s-<uuid v4>", service, e.Service.ID, service)
		}
		got = append(got, fmt.Sprintf("%s:%d", e.Service.Address, e.Service.Port))
	}
	for _, c := range cs {
		want = append(want, fmt.Sprintf("%s:%d", c.ip(), ports[service]))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		s.t.Errorf("%s passing in Consul at %v, want the containers' addresses %v", service, got, want)
	}
}

// entries returns the service's instances in Consul with their checks: the
// passing ones, or every registered one.
func (s *stack) entries(service string, passing bool) []*consul.ServiceEntry {
	s.t.Helper()
	entries, _, err := s.consul.Health().Service(service, "", passing, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	return entries
}

// instanceIDs returns the IDs of the service's instances in Consul: the
// passing ones, or every registered one.
func (s *stack) instanceIDs(service string, passing bool) []string {
	s.t.Helper()
	var ids []string
	for _, e := range s.entries(service, passing) {
		ids = append(ids, e.Service.ID)
	}
	return ids
}

// instanceAt returns the ID of the service's passing instance at ip.
func (s *stack) instanceAt(service, ip string) string {
	s.t.Helper()
	for _, e := range s.entries(service, true) {
		if e.Service.Address == ip {
			return e.Service.ID
		}
	}
	s.t.Fatalf("no %s instance registered at %s", service, ip)
	return ""
}

// status returns the aggregated health of an instance, "" if unknown.
func (s *stack) status(service, id string) string {
	s.t.Helper()
	for _, e := range s.entries(service, false) {
		if e.Service.ID == id {
			return e.Checks.AggregatedStatus()
		}
	}
	return ""
}

// movieMetric returns the value of one sample on movie's /metrics, -1 if
// it is not there.
func (s *stack) movieMetric(sample string) float64 {
	s.t.Helper()
	resp, err := http.Get("http://" + s.movieAddr + "/metrics")
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	for line := range strings.Lines(body.String()) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				s.t.Fatalf("metric %s: %v", sample, err)
			}
			return f
		}
	}
	return -1
}

type movieAnswer struct {
	Status   int
	Metadata struct {
		ID    string `json:"id"`
		Title string `json:"title"`
	} `json:"metadata"`
	Rating  *float64 `json:"rating"`
	Partial []string `json:"partial"`
	Error   string   `json:"error"`
}

var client = &http.Client{Timeout: 10 * time.Second}

func (s *stack) getMovie(id string) (movieAnswer, error) {
	var a movieAnswer
	resp, err := client.Get("http://" + s.movieAddr + "/movie?id=" + id)
	if err != nil {
		return a, err
	}
	defer resp.Body.Close()
	a.Status = resp.StatusCode
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		return a, fmt.Errorf("status %d, body: %w", resp.StatusCode, err)
	}
	return a, nil
}

// load is a steady stream of GET /movie from the host, recording every
// answer that is not a complete 200.
type load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	ok       int
	failures []string
}

func (s *stack) startLoad(workers int) *load {
	ctx, cancel := context.WithCancel(s.ctx)
	l := &load{cancel: cancel}
	s.t.Cleanup(func() { cancel(); l.wg.Wait() })
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for ctx.Err() == nil {
				a, err := s.getMovie(seededMovie)
				l.mu.Lock()
				switch {
				case err != nil:
					l.failures = append(l.failures, fmt.Sprintf("%s: %v", time.Now().Format(time.TimeOnly), err))
				case a.Status != http.StatusOK || a.Rating == nil || len(a.Partial) > 0:
					l.failures = append(l.failures, fmt.Sprintf("%s: %+v", time.Now().Format(time.TimeOnly), a))
				default:
					l.ok++
				}
				l.mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	return l
}

func (l *load) served() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok + len(l.failures)
}

func (s *stack) waitServed(l *load, n int) {
	s.t.Helper()
	s.waitFor(time.Minute, fmt.Sprintf("%d requests served", n), func() bool { return l.served() >= n })
}

// stop ends the stream and fails the test if any request failed.
func (l *load) stop(t *testing.T) {
	t.Helper()
	l.cancel()
	l.wg.Wait()
	t.Logf("%d requests, %d failed", l.ok+len(l.failures), len(l.failures))
	if len(l.failures) > 0 {
		t.Errorf("%d of %d requests failed, first ones:\n%s", len(l.failures), l.ok+len(l.failures),
			strings.Join(l.failures[:min(10, len(l.failures))], "\n"))
	}
}

// checkWatch follows the instances registered in Consul with blocking
// queries until Consul stops answering, remembering the last state it saw.
type checkWatch struct {
	cancel context.CancelFunc
	done   chan struct{}
	seen   map[string]bool // every instance ID ever seen
	last   map[string]bool // the instance IDs in the last answer
	err    error
}

func (s *stack) watchChecks() *checkWatch {
	ctx, cancel := context.WithCancel(s.ctx)
	w := &checkWatch{cancel: cancel, done: make(chan struct{}), seen: map[string]bool{}}
	s.t.Cleanup(func() { cancel(); <-w.done })
	first := make(chan struct{})
	go func() {
		defer close(w.done)
		var index uint64
		for {
			q := (&consul.QueryOptions{WaitIndex: index, WaitTime: 5 * time.Second}).WithContext(ctx)
			checks, meta, err := s.consul.Health().State(consul.HealthAny, q)
			if err != nil {
				// Consul stopped (or the test ended the watch).
				w.err = err
				if w.last == nil {
					close(first)
				}
				return
			}
			ids := map[string]bool{}
			for _, c := range checks {
				if c.ServiceID != "" {
					ids[c.ServiceID], w.seen[c.ServiceID] = true, true
				}
			}
			if w.last == nil {
				close(first)
			}
			w.last, index = ids, meta.LastIndex
		}
	}()
	<-first
	return w
}

// stop waits for the watch to end (Consul is gone) and returns the last
// registered instances it saw.
func (w *checkWatch) stop(t *testing.T) map[string]bool {
	t.Helper()
	select {
	case <-w.done:
	case <-time.After(30 * time.Second):
		w.cancel()
		<-w.done
		t.Errorf("Consul still answers after down")
	}
	w.cancel()
	if w.last == nil {
		t.Fatalf("the Consul watch got no answer: %v", w.err)
	}
	if errors.Is(w.err, context.Canceled) {
		t.Errorf("the Consul watch was cancelled, not ended by Consul stopping")
	}
	return w.last
}

// waitFor polls cond until it holds and returns when it first did; it fails
// the test after within, or when the test's time is up.
func (s *stack) waitFor(within time.Duration, what string, cond func() bool) time.Time {
	s.t.Helper()
	deadline := time.Now().Add(within)
	if d, ok := s.ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	for !cond() {
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: not true within %s", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Now()
}

// noHealthcheck reports whether service's image has no healthcheck: the
// images built from bin/prometheus and bin/jaeger are those binaries alone.
func noHealthcheck(service string) bool { return service == "prometheus" || service == "jaeger" }

// checkTracesInJaeger checks that the three services export their spans to
// the jaeger service, through its published query API: each of them has
// traces there once the requests so far have been served.
func (s *stack) checkTracesInJaeger() {
	s.t.Helper()
	addr := strings.TrimSpace(s.compose(30*time.Second, "port", "jaeger", "16686"))
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		s.t.Fatalf("jaeger published on %q, want a loopback port", addr)
	}
	var services []string
	s.waitFor(time.Minute, "Jaeger has traces of metadata, rating and movie", func() bool {
		resp, err := client.Get("http://" + addr + "/api/services")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var body struct {
			Data []string `json:"data"`
		}
		if json.NewDecoder(resp.Body).Decode(&body) != nil {
			return false
		}
		services = body.Data
		return slices.Contains(services, "movie") && slices.Contains(services, "metadata") && slices.Contains(services, "rating")
	})
	s.t.Logf("Jaeger at %s has traces of %v", addr, services)
}
