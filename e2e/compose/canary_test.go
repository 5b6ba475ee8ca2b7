package compose

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"movieexample.com/internal/metricstest"
)

// checkCanary runs the README's canary rollout: rating-canary (profile
// canary, tag canary, version=v2) registers beside the two rating
// instances, movie recreated with CANARY_PERCENT=100 sends it every rating
// call, and Prometheus labels its series version="v2" from its Consul
// metadata, so the README's error-ratio query tells the versions apart. The
// canary is removed at the end, and movie then falls back to the others.
func (s *stack) checkCanary() {
	t := s.t
	t.Helper()
	s.env = append(s.env, "RATING_CANARY_IMAGE=movieapp/rating:"+s.tag)
	s.compose(2*time.Minute, "--profile", "canary", "up", "-d", "--no-build", "--no-deps", "rating-canary")
	var canaryID string
	s.waitFor(2*time.Minute, "the canary passing in Consul with its tag and version", func() bool {
		for _, e := range s.entries("rating", true) {
			if slices.Contains(e.Service.Tags, "canary") && e.Service.Meta["version"] == "v2" {
				canaryID = e.Service.ID
			}
		}
		return canaryID != ""
	})
	s.waitFor(30*time.Second, "movie discovers the canary", func() bool {
		return s.movieMetric(`movieapp_gateway_upstream_instances{target="rating"}`) == 3
	})

	s.env = append(s.env, "CANARY_PERCENT=100")
	s.compose(2*time.Minute, "up", "-d", "--no-build", "--no-deps", "movie")
	s.waitFor(2*time.Minute, "movie recreated and answering", func() bool {
		a, err := s.getMovie(seededMovie)
		return err == nil && a.Status == http.StatusOK
	})
	s.waitFor(30*time.Second, "the new movie discovers the three rating instances", func() bool {
		return s.movieMetric(`movieapp_gateway_upstream_instances{target="rating"}`) == 3
	})
	const calls = 40
	for i := range calls {
		if a, err := s.getMovie(seededMovie); err != nil || a.Status != http.StatusOK || a.Rating == nil {
			t.Fatalf("GET /movie #%d with the canary at 100%%: %+v, %v", i, a, err)
		}
	}

	prom := strings.TrimSpace(s.compose(30*time.Second, "port", "prometheus", "9090"))
	if !strings.HasPrefix(prom, "127.0.0.1:") {
		t.Fatalf("prometheus published on %q, want a loopback port", prom)
	}
	// Steady traffic while Prometheus is asked: a rate needs the counter
	// to move between two scrapes.
	load := s.startLoad(1)
	const byVersion = `sum by (version) (movieapp_http_requests_total{service="rating",route="/rating"})`
	var got map[string]float64
	s.waitFor(time.Minute, "Prometheus counts the canary's calls under version=\"v2\"", func() bool {
		got = promByVersion(prom, byVersion)
		return got["v2"] >= calls
	})
	t.Logf("rating requests by version in Prometheus, with the canary at 100%%: %v", got)
	// The README's query runs and names both versions.
	const all = `sum by (version) (rate(movieapp_http_requests_total{service="rating",route="/rating"}[1m]))`
	readme := `(sum by (version) (rate(movieapp_http_requests_total{service="rating",route="/rating",code=~"5.."}[1m])) or ` +
		all + ` * 0) / ` + all
	s.waitFor(time.Minute, "the README's error-ratio query gives version v2 an error ratio of 0", func() bool {
		r, ok := promByVersion(prom, readme)["v2"]
		return ok && r == 0
	})
	load.stop(t)

	s.compose(2*time.Minute, "--profile", "canary", "rm", "--stop", "--force", "rating-canary")
	s.waitFor(30*time.Second, "movie down to the two rating instances", func() bool {
		return s.movieMetric(`movieapp_gateway_upstream_instances{target="rating"}`) == 2
	})
	if a, err := s.getMovie(seededMovie); err != nil || a.Status != http.StatusOK || a.Rating == nil {
		t.Errorf("GET /movie after the canary left, CANARY_PERCENT still 100: %+v, %v; want the others to answer", a, err)
	}
}

// promByVersion runs an instant query and returns each series' value by
// its version label; nil if the query fails (the caller waits).
func promByVersion(addr, query string) map[string]float64 {
	samples, err := metricstest.Query("http://"+addr, query)
	if err != nil {
		return nil
	}
	out := map[string]float64{}
	for _, s := range samples {
		out[s.Metric["version"]] = s.Value
	}
	return out
}
