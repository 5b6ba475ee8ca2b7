package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// allocs are a process's cumulative heap allocation counters.
type allocs struct {
	objects, bytes float64
}

// readAllocs reads a process's allocation counters from url: the Prometheus
// metrics of a movieapp service (/metrics) or the expvar memstats of a
// reference process (/debug/vars). Allocation per request does not depend on
// how busy the machine is, which makes it the steadiest figure of a run.
func readAllocs(ctx context.Context, url string) (allocs, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return allocs{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return allocs{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return allocs{}, fmt.Errorf("%s: %s", url, resp.Status)
	}
	var a allocs
	if strings.HasSuffix(url, "/debug/vars") {
		var vars struct {
			MemStats struct{ Mallocs, TotalAlloc uint64 } `json:"memstats"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&vars); err != nil {
			return allocs{}, fmt.Errorf("%s: %w", url, err)
		}
		return allocs{float64(vars.MemStats.Mallocs), float64(vars.MemStats.TotalAlloc)}, nil
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		switch name {
		case "go_memstats_mallocs_total":
			a.objects, err = strconv.ParseFloat(value, 64)
		case "go_memstats_alloc_bytes_total":
			a.bytes, err = strconv.ParseFloat(value, 64)
		}
		if err != nil {
			return allocs{}, fmt.Errorf("%s: %s: %w", url, name, err)
		}
	}
	return a, sc.Err()
}

// readCounter returns the value of the unlabelled metric name on the
// Prometheus page at url.
func readCounter(ctx context.Context, url, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), " "); ok && k == name {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("%s: no %s", url, name)
}
