// Package e2e runs movieapp's real binaries, built with the race detector,
// against a real Consul dev agent on loopback: registration, discovery,
// load balancing, graceful deregistration and degradation, end to end.
package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"movieexample.com/internal/cluster"
	"movieexample.com/internal/devconsul"
)

var binDir string // the binaries built by TestMain

func TestMain(m *testing.M) { cluster.TestMain(m, &binDir) }

// start runs one service instance for the test, stopped at cleanup.
func start(t *testing.T, agent *devconsul.Agent, service string, extra ...string) *cluster.Process {
	t.Helper()
	return cluster.StartForTest(t, binDir, service, agent.Addr, nil, extra...)
}

var client = &http.Client{Timeout: 5 * time.Second}

type movieAnswer struct {
	Status   int
	Metadata struct {
		ID    string `json:"id"`
		Title string `json:"title"`
	} `json:"metadata"`
	Rating  *float64 `json:"rating"`
	Partial []string `json:"partial"`
}

func getMovie(addr, id string) (movieAnswer, error) {
	var a movieAnswer
	resp, err := client.Get("http://" + addr + "/movie?id=" + id)
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

// waitMovieReady waits until movie's /ready answers 200: it has
// discovered both upstreams.
func waitMovieReady(t *testing.T, movie *cluster.Process) {
	t.Helper()
	waitFor(t, 30*time.Second, "movie ready", func() bool {
		resp, err := client.Get("http://" + movie.Addr + "/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not true within %s", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// passingIDs returns the IDs of the instances of service that pass their
// Consul check, as Consul answers a gateway.
func passingIDs(t *testing.T, cc *consul.Client, service string) map[string]bool {
	t.Helper()
	entries, _, err := cc.Health().Service(service, "", true, nil)
	if err != nil {
		// Not an empty list: that would pass a wait for an instance to leave.
		t.Fatalf("passing %s instances: %v", service, err)
	}
	ids := map[string]bool{}
	for _, e := range entries {
		ids[e.Service.ID] = true
	}
	return ids
}

// ratingRequests reads how many /rating requests an instance has served
// from its own /metrics.
func ratingRequests(t *testing.T, addr string) float64 {
	t.Helper()
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	total := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "movieapp_http_requests_total{") && strings.Contains(line, `route="/rating"`) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			total += v
		}
	}
	return total
}

// load sends GET /movie requests back to back until stop is closed and
// records every answer that is not a 200.
type load struct {
	sent, failed, partial atomic.Int64
	mu                    sync.Mutex
	failures              []string
	stop                  chan struct{}
	done                  sync.WaitGroup
}

func startLoad(addr string, workers int) *load {
	l := &load{stop: make(chan struct{})}
	for w := range workers {
		l.done.Add(1)
		go func() {
			defer l.done.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				id := strconv.Itoa(1 + (w+i)%4)
				a, err := getMovie(addr, id)
				l.sent.Add(1)
				switch {
				case err != nil || a.Status != http.StatusOK:
					l.failed.Add(1)
					l.mu.Lock()
					l.failures = append(l.failures, fmt.Sprintf("id %s: status %d err %v", id, a.Status, err))
					l.mu.Unlock()
				case len(a.Partial) > 0:
					l.partial.Add(1)
				}
			}
		}()
	}
	return l
}

func (l *load) finish() {
	close(l.stop)
	l.done.Wait()
}

func TestDiscoveryLoadBalancingAndGracefulShutdown(t *testing.T) {
	agent := devconsul.New(t)
	cc, err := agent.Client("")
	if err != nil {
		t.Fatal(err)
	}

	start(t, agent, "metadata")
	start(t, agent, "metadata")
	ratings := []*cluster.Process{start(t, agent, "rating"), start(t, agent, "rating")}
	movie := start(t, agent, "movie")

	waitMovieReady(t, movie)
	for service, want := range map[string]int{"metadata": 2, "rating": 2, "movie": 1} {
		if got := len(passingIDs(t, cc, service)); got != want {
			t.Errorf("%d passing %s instances in Consul, want %d", got, service, want)
		}
	}

	t.Run("a movie answer has metadata and rating", func(t *testing.T) {
		a, err := getMovie(movie.Addr, "1")
		if err != nil || a.Status != http.StatusOK || a.Metadata.Title == "" || a.Rating == nil || len(a.Partial) != 0 {
			t.Fatalf("GET /movie?id=1 = %+v, %v; want 200 with metadata and rating", a, err)
		}
	})

	t.Run("requests reach both rating instances", func(t *testing.T) {
		for range 60 {
			if _, err := getMovie(movie.Addr, "2"); err != nil {
				t.Fatal(err)
			}
		}
		for _, r := range ratings {
			if n := ratingRequests(t, r.Addr); n == 0 {
				t.Errorf("rating %s served no request out of 60", r.InstanceID)
			}
		}
	})

	t.Run("SIGTERM leaves Consul at once, exits 0, loses no request", func(t *testing.T) {
		l := startLoad(movie.Addr, 4)
		time.Sleep(300 * time.Millisecond) // under load before the stop
		victim := ratings[0]
		if err := victim.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		took := waitFor(t, 5*time.Second, "stopped instance leaves the passing list", func() bool {
			return !passingIDs(t, cc, "rating")[victim.InstanceID]
		})
		t.Logf("SIGTERM to deregistered in Consul: %s", took.Round(time.Millisecond))
		code, err := victim.Wait(15 * time.Second)
		if err != nil || code != 0 {
			t.Errorf("exit code %d, %v; want 0", code, err)
		}
		time.Sleep(300 * time.Millisecond) // and under load after it
		l.finish()
		t.Logf("%d movie requests during the stop: %d failed, %d without rating", l.sent.Load(), l.failed.Load(), l.partial.Load())
		if l.failed.Load() != 0 {
			t.Errorf("%d movie requests failed, first: %s", l.failed.Load(), l.failures[0])
		}
	})

	t.Run("with every rating instance gone, movie degrades to metadata", func(t *testing.T) {
		if code, err := ratings[1].Stop(); err != nil || code != 0 {
			t.Fatalf("stop rating: exit %d, %v", code, err)
		}
		var last movieAnswer
		waitFor(t, 10*time.Second, "degraded answer", func() bool {
			a, err := getMovie(movie.Addr, "3")
			last = a
			return err == nil && a.Status == http.StatusOK && len(a.Partial) == 1 && a.Partial[0] == "rating"
		})
		if last.Metadata.Title == "" || last.Rating != nil {
			t.Errorf("degraded answer %+v: want metadata and no rating", last)
		}
		resp, err := client.Get("http://" + movie.Addr + "/ready")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("movie /ready with no rating instance: %d, want 503", resp.StatusCode)
		}
	})
}

func TestMovieKeepsWorkingWhileConsulIsDown(t *testing.T) {
	agent := devconsul.New(t)
	start(t, agent, "metadata")
	start(t, agent, "rating")
	movie := start(t, agent, "movie")
	waitFor(t, 30*time.Second, "full movie answer", func() bool {
		a, err := getMovie(movie.Addr, "1")
		return err == nil && a.Status == http.StatusOK && a.Rating != nil
	})

	agent.Stop()
	// Movie keeps the instances it last knew: the API does not depend on
	// Consul being up, only on the instances being there.
	for i := range 50 {
		a, err := getMovie(movie.Addr, "1")
		if err != nil || a.Status != http.StatusOK || a.Rating == nil {
			t.Fatalf("request %d with Consul down: %+v, %v; want a full 200", i, a, err)
		}
	}
	waitFor(t, 10*time.Second, "movie logs that Consul is unreachable", func() bool {
		return strings.Contains(movie.Logs(), `"msg":"service discovery failing; keeping the last known instances"`)
	})
}
