package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"reflect"
	"slices"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"movieexample.com/movie"
)

// Load is one measurement of one system.
type Load struct {
	// Connections is the number of keep-alive connections (workers) of a
	// closed loop, each sending its next request when the last one is
	// answered; with Rate set, it is the number of workers to start with.
	Connections int
	// Rate, if positive, sends this many requests per second whatever the
	// latency (an open loop) as long as fewer than Connections are in
	// flight.
	Rate int
	// Duration is how long requests are sent.
	Duration time.Duration
}

// Sample is what one or more measurements of one system gave.
type Sample struct {
	Requests     int
	Failures     int
	FirstFailure string
	Elapsed      time.Duration
	latencies    []time.Duration
	sorted       bool
}

// Add pools o into s.
func (s *Sample) Add(o Sample) {
	s.Requests += o.Requests
	s.Failures += o.Failures
	if s.FirstFailure == "" {
		s.FirstFailure = o.FirstFailure
	}
	s.Elapsed += o.Elapsed
	s.latencies = append(s.latencies, o.latencies...)
	s.sorted = false
}

// Rate is the throughput in requests per second.
func (s *Sample) Rate() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Requests) / s.Elapsed.Seconds()
}

// Quantile returns the latency below which a fraction q of the requests
// were answered (nearest rank), 0 without requests.
func (s *Sample) Quantile(q float64) time.Duration {
	if len(s.latencies) == 0 {
		return 0
	}
	if !s.sorted {
		slices.Sort(s.latencies)
		s.sorted = true
	}
	i := int(math.Ceil(q*float64(len(s.latencies)))) - 1
	return s.latencies[min(max(i, 0), len(s.latencies)-1)]
}

// Target is the request the load sends to a system, in turn over the ids,
// with the answer it must get.
type Target struct {
	URL  string
	Want []byte // the expected body, as movie encodes it
}

// Targets returns the requests for GET base/movie?id=ID for each id, with
// the answers want gives.
func Targets(base string, ids []string, want func(id string) movie.Details) ([]Target, error) {
	ts := make([]Target, 0, len(ids))
	for _, id := range ids {
		var b bytes.Buffer
		// As go-kit's EncodeJSONResponse writes it, newline included.
		if err := json.NewEncoder(&b).Encode(want(id)); err != nil {
			return nil, err
		}
		ts = append(ts, Target{URL: base + "/movie?id=" + id, Want: b.Bytes()})
	}
	return ts, nil
}

// NewLoadClient returns the load generator's client for one system: its
// keep-alive connections last across the warm-up and every measurement of
// that system.
func NewLoadClient() *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConns:        4096,
			MaxIdleConnsPerHost: 4096,
			IdleConnTimeout:     5 * time.Minute,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Attack sends load to targets through client and returns the sample. A
// request fails unless it is answered 200 with the target's body, so a
// degraded answer (movie without its rating) counts as a failure too.
func Attack(ctx context.Context, client *http.Client, targets []Target, load Load) Sample {
	vts := make([]vegeta.Target, len(targets))
	want := make(map[string][]byte, len(targets))
	for i, t := range targets {
		vts[i] = vegeta.Target{Method: http.MethodGet, URL: t.URL}
		want[t.URL] = t.Want
	}
	rate := vegeta.Rate{Freq: load.Rate, Per: time.Second}
	// At a fixed rate too, at most Connections requests are in flight, on
	// the same keep-alive connections: a system that falls behind shows as
	// a missed rate, not as hundreds of new connections that would make
	// its memory figures those of an overload.
	workers := uint64(load.Connections)
	atk := vegeta.NewAttacker(vegeta.Client(client), vegeta.Workers(workers), vegeta.MaxWorkers(workers))
	stop := context.AfterFunc(ctx, func() { atk.Stop() })
	defer stop()

	s := Sample{latencies: make([]time.Duration, 0, 1<<16)}
	start := time.Now()
	for res := range atk.Attack(vegeta.NewStaticTargeter(vts...), rate, load.Duration, "") {
		s.Requests++
		s.latencies = append(s.latencies, res.Latency)
		if msg := check(res, want[res.URL]); msg != "" {
			s.Failures++
			if s.FirstFailure == "" {
				s.FirstFailure = msg
			}
		}
	}
	s.Elapsed = time.Since(start)
	return s
}

// check returns why res is not the answer want, or "" if it is.
func check(res *vegeta.Result, want []byte) string {
	switch {
	case res.Error != "" && res.Code == 0:
		return fmt.Sprintf("GET %s: %s", res.URL, res.Error)
	case res.Code != http.StatusOK:
		return fmt.Sprintf("GET %s: status %d: %s", res.URL, res.Code, bytes.TrimSpace(res.Body))
	case bytes.Equal(res.Body, want) || sameJSON(res.Body, want):
		return ""
	}
	return fmt.Sprintf("GET %s: got %s, want %s", res.URL, bytes.TrimSpace(res.Body), bytes.TrimSpace(want))
}

// sameJSON reports whether a and b are the same movie.Details however they
// are spelled, so a change of field order or spacing is not a failure.
func sameJSON(a, b []byte) bool {
	var x, y movie.Details
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}
