package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"movieexample.com/internal/devconsul"
	"movieexample.com/internal/metricstest"
	"movieexample.com/metadata"
)

// tally counts one stream's answers by kind, keeping the first few that
// were neither right nor an honest shed.
type tally struct {
	mu                    sync.Mutex
	ok, partial, shed     int
	wrong                 []string
	readyChecks, notReady int // /ready probes, and those not answered 200
}

func (t *tally) add(kind string, detail string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch kind {
	case "ok":
		t.ok++
	case "partial":
		t.partial++
	case "shed":
		t.shed++
	default:
		if len(t.wrong) < 5 {
			t.wrong = append(t.wrong, detail)
		} else {
			t.wrong[4] = fmt.Sprintf("... and more, the last: %s", detail)
		}
	}
}

func (t *tally) counts() (ok, partial, shed int, wrong []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ok, t.partial, t.shed, append([]string(nil), t.wrong...)
}

// classify says what one answer was: "ok" (200 and right), "partial" (200,
// right metadata, the rating marked missing), "shed" (503 with Retry-After
// and the JSON error shape) or "wrong", with why.
func classify(resp *http.Response, err error, check func(body []byte) (partial bool, err error)) (string, string) {
	if err != nil {
		return "wrong", err.Error()
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "wrong", err.Error()
	}
	switch resp.StatusCode {
	case http.StatusOK:
		partial, err := check(body)
		switch {
		case err != nil:
			return "wrong", fmt.Sprintf("200 %s: %v", body, err)
		case partial:
			return "partial", ""
		}
		return "ok", ""
	case http.StatusServiceUnavailable:
		var e struct{ Error string }
		if resp.Header.Get("Retry-After") == "" || json.Unmarshal(body, &e) != nil || e.Error == "" {
			return "wrong", fmt.Sprintf("503 without Retry-After or the JSON error shape: %q %s", resp.Header.Get("Retry-After"), body)
		}
		return "shed", ""
	}
	return "wrong", fmt.Sprintf("status %d: %s", resp.StatusCode, body)
}

// TestOverloadedInstanceShedsAndStaysReady runs metadata with room for one
// request at a time under concurrent load, directly and through movie: the
// excess is shed with 503 and Retry-After, metadata stays ready and passing
// in Consul, movie never ejects it, and every answer movie gives is right
// or an honest 503 that says to come back.
func TestOverloadedInstanceShedsAndStaysReady(t *testing.T) {
	agent := devconsul.New(t)
	cc, err := agent.Client("")
	if err != nil {
		t.Fatal(err)
	}
	md := start(t, agent, "metadata", "-max-inflight", "1")
	start(t, agent, "rating")
	mv := start(t, agent, "movie")
	waitMovieReady(t, mv)

	seeded := map[string]metadata.Metadata{}
	for _, m := range metadata.Seed {
		seeded[m.ID] = m
	}
	checkMetadata := func(id string) func([]byte) (bool, error) {
		return func(body []byte) (bool, error) {
			var m metadata.Metadata
			if err := json.Unmarshal(body, &m); err != nil || m != seeded[id] {
				return false, fmt.Errorf("want %+v", seeded[id])
			}
			return false, nil
		}
	}
	checkMovie := func(id string) func([]byte) (bool, error) {
		return func(body []byte) (bool, error) {
			var a movieAnswer
			if err := json.Unmarshal(body, &a); err != nil || a.Metadata.ID != id || a.Metadata.Title != seeded[id].Title {
				return false, fmt.Errorf("want the metadata of %s", id)
			}
			if len(a.Partial) > 0 {
				return true, nil
			}
			if a.Rating == nil {
				return false, fmt.Errorf("no rating and none marked missing")
			}
			return false, nil
		}
	}

	var direct, viaMovie, ready tally
	stop := make(chan struct{})
	var wg sync.WaitGroup
	stream := func(workers int, do func(i int)) {
		for w := range workers {
			wg.Go(func() {
				for i := w; ; i += workers {
					select {
					case <-stop:
						return
					default:
					}
					do(i)
				}
			})
		}
	}
	stream(8, func(i int) {
		id := strconv.Itoa(1 + i%4)
		resp, err := client.Get("http://" + md.Addr + "/metadata?id=" + id)
		direct.add(classify(resp, err, checkMetadata(id)))
	})
	stream(8, func(i int) {
		id := strconv.Itoa(1 + i%4)
		resp, err := client.Get("http://" + mv.Addr + "/movie?id=" + id)
		viaMovie.add(classify(resp, err, checkMovie(id)))
	})
	// Readiness, probed all along: shedding is not a failure.
	stream(1, func(i int) {
		addr := []string{md.Addr, mv.Addr}[i%2]
		resp, err := client.Get("http://" + addr + "/ready")
		ready.mu.Lock()
		ready.readyChecks++
		if err != nil || resp.StatusCode != http.StatusOK {
			ready.notReady++
		}
		ready.mu.Unlock()
		if err == nil {
			resp.Body.Close()
		}
	})
	t.Cleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	})
	waitFor(t, time.Minute, "metadata shedding, and movie answering 503 for it", func() bool {
		_, _, dShed, _ := direct.counts()
		_, _, mShed, _ := viaMovie.counts()
		return dShed > 0 && mShed > 0
	})
	close(stop)
	wg.Wait()

	for _, s := range []struct {
		name string
		t    *tally
	}{{"metadata", &direct}, {"movie", &viaMovie}} {
		ok, partial, shed, wrong := s.t.counts()
		t.Logf("%s: %d right, %d without the rating, %d shed", s.name, ok, partial, shed)
		if len(wrong) > 0 {
			t.Errorf("%s answered neither right nor an honest shed: %v", s.name, wrong)
		}
		if ok == 0 {
			t.Errorf("%s answered nothing right: the limit admits one at a time, not none", s.name)
		}
	}
	if ready.readyChecks == 0 || ready.notReady > 0 {
		t.Errorf("/ready not 200 in %d of %d probes while shedding", ready.notReady, ready.readyChecks)
	}
	if !passingIDs(t, cc, "metadata")[md.InstanceID] {
		t.Error("metadata not passing in Consul after shedding")
	}
	mdm := metricstest.Scrape(t, "http://"+md.Addr+"/metrics")
	if got, _ := mdm.Value("movieapp_http_shed_requests_total", nil); got == 0 {
		t.Error("metadata's movieapp_http_shed_requests_total = 0 after shedding")
	}
	mvm := metricstest.Scrape(t, "http://"+mv.Addr+"/metrics")
	if got, _ := mvm.Value("movieapp_gateway_upstream_requests_total", map[string]string{"target": "metadata", "outcome": "overloaded"}); got == 0 {
		t.Error(`movie's upstream_requests_total{target="metadata",outcome="overloaded"} = 0`)
	}
	if got, _ := mvm.Value("movieapp_gateway_upstream_ejections_total", map[string]string{"target": "metadata"}); got != 0 {
		t.Errorf("movie ejected metadata %v times for shedding, want never", got)
	}
}
