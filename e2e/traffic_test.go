package e2e

import (
	"bufio"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"movieexample.com/internal/cluster"
	"movieexample.com/internal/devconsul"
)

// discovered reads how many instances of target movie's gateway has
// discovered, from movie's /metrics.
func discovered(addr, target string) float64 {
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, `movieapp_gateway_upstream_instances{target="`+target+`"}`) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			return v
		}
	}
	return 0
}

// drive sends n GET /movie requests over 4 connections and fails the test
// on any answer that is not a full 200.
func drive(t *testing.T, addr string, n int) {
	t.Helper()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []string
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 4 {
				id := strconv.Itoa(1 + i%4)
				if a, err := getMovie(addr, id); err != nil || a.Status != http.StatusOK || len(a.Partial) != 0 {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("id %s: %+v, %v", id, a, err))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d requests failed or came without the rating; first: %s", len(failures), n, failures[0])
	}
}

// shares sends n requests through movie and returns each rating instance's
// share of the rating requests they served meanwhile, read from their own
// /metrics.
func shares(t *testing.T, movie string, n int, ratings ...*cluster.Process) []float64 {
	t.Helper()
	before := make([]float64, len(ratings))
	for i, r := range ratings {
		before[i] = ratingRequests(t, r.Addr)
	}
	drive(t, movie, n)
	out := make([]float64, len(ratings))
	var all float64
	for i, r := range ratings {
		out[i] = ratingRequests(t, r.Addr) - before[i]
		all += out[i]
	}
	if all < float64(n) {
		t.Fatalf("the rating instances served %.0f requests for %d movie requests", all, n)
	}
	for i := range out {
		out[i] /= all
	}
	return out
}

// near checks a share against p within tol, a tolerance of at least six
// binomial standard deviations of n draws (one failure in hundreds of
// millions of runs for a correct split).
func near(t *testing.T, what string, share float64, n int, p, tol float64) {
	t.Helper()
	if sd := math.Sqrt(p * (1 - p) / float64(n)); p > 0 && p < 1 && tol < 6*sd {
		t.Fatalf("%s: tolerance %.3f under six standard deviations (%.3f)", what, tol, 6*sd)
	}
	t.Logf("%s: %.1f%% (want %.0f%% ± %.0f)", what, 100*share, 100*p, 100*tol)
	if math.Abs(share-p) > tol {
		t.Errorf("%s: share %.3f, want %.2f ± %.2f", what, share, p, tol)
	}
}

// tolerance is seven binomial standard deviations of a share p of n, and
// at least two points.
func tolerance(p float64, n int) float64 {
	return math.Max(0.02, 7*math.Sqrt(p*(1-p)/float64(n)))
}

// TestWeightsAndCanary runs the real binaries against a real Consul: two
// rating instances registered with -weight 1 and -weight 9 get about 10%
// and 90% of movie's calls; then a third one registered with -tags canary
// gets -canary-percent of the calls of a movie started with -canary-tag
// canary, for 5, 50 and 100 percent, the others sharing the rest by weight.
func TestWeightsAndCanary(t *testing.T) {
	agent := devconsul.New(t)
	start(t, agent, "metadata")
	light := start(t, agent, "rating", "-weight", "1")
	heavy := start(t, agent, "rating", "-weight", "9")
	movie := start(t, agent, "movie")
	waitFor(t, 30*time.Second, "movie discovers both rating instances", func() bool { return discovered(movie.Addr, "rating") == 2 })

	const n = 4000
	s := shares(t, movie.Addr, n, light, heavy)
	near(t, "weight 9 of 10", s[1], n, 0.9, tolerance(0.9, n))

	canary := start(t, agent, "rating", "-tags", "canary", "-meta", "version=v2")
	waitFor(t, 30*time.Second, "movie discovers the canary", func() bool { return discovered(movie.Addr, "rating") == 3 })
	// Without -canary-tag the canary is one more instance, weight 1 of 11.
	s = shares(t, movie.Addr, n, light, heavy, canary)
	near(t, "canary without -canary-tag", s[2], n, 1.0/11, tolerance(1.0/11, n))

	for _, pct := range []int{5, 50, 100} {
		t.Run(fmt.Sprintf("canary at %d percent", pct), func(t *testing.T) {
			mv := start(t, agent, "movie", "-canary-tag", "canary", "-canary-percent", strconv.Itoa(pct))
			defer mv.Stop()
			waitFor(t, 30*time.Second, "movie discovers the three", func() bool { return discovered(mv.Addr, "rating") == 3 })
			s := shares(t, mv.Addr, n, light, heavy, canary)
			p := float64(pct) / 100
			near(t, "canary", s[2], n, p, tolerance(p, n))
			if pct < 100 {
				// The rest by weight: heavy gets 9 of 10 of it.
				rest := int(float64(n) * (1 - p))
				near(t, "heavy of the others", s[1]/(s[0]+s[1]), rest, 0.9, tolerance(0.9, rest))
			}
		})
	}
}
