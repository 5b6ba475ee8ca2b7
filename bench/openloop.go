package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// OpenLoad is one open-loop measurement: requests arrive at Rate per
// second for Duration whether or not earlier ones were answered, as a
// crowd of independent clients would, and at most Outstanding are awaited
// at once. An arrival that finds Outstanding awaited is not sent and is
// counted as NotSent: the bound keeps the load generator itself (its
// goroutines, its connections) from growing without end in front of a
// system that falls behind, without delaying the arrivals after it, as a
// closed loop's workers would.
type OpenLoad struct {
	Rate        int
	Duration    time.Duration
	Outstanding int
}

// OpenSample is what open-loop measurements of one system gave, pooled.
type OpenSample struct {
	Arrivals int // requests due
	NotSent  int // arrivals that found Outstanding requests awaited
	OK       int // answered 200 with the expected body
	Shed     int // answered 503 with Retry-After
	Failures int // anything else: another status, a wrong body, a transport error
	// FirstFailure says what the first failure was.
	FirstFailure string
	// Elapsed is from the first arrival to the last answer.
	Elapsed time.Duration
	// ok holds the latencies of the OK answers, from when each request was
	// due: the admitted requests.
	ok Sample
}

// Add pools o into s.
func (s *OpenSample) Add(o OpenSample) {
	s.Arrivals += o.Arrivals
	s.NotSent += o.NotSent
	s.OK += o.OK
	s.Shed += o.Shed
	s.Failures += o.Failures
	if s.FirstFailure == "" {
		s.FirstFailure = o.FirstFailure
	}
	s.Elapsed += o.Elapsed
	s.ok.Add(o.ok)
}

// per returns n per second of s.
func (s *OpenSample) per(n int) float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(n) / s.Elapsed.Seconds()
}

// Goodput is the OK answers per second.
func (s *OpenSample) Goodput() float64 { return s.per(s.OK) }

// AdmittedQuantile is the latency quantile q of the OK answers.
func (s *OpenSample) AdmittedQuantile(q float64) time.Duration { return s.ok.Quantile(q) }

// outcome is one answer's classification.
type outcome int

const (
	answeredOK outcome = iota
	answeredShed
	answeredFailed
)

// AttackOpen sends load to targets, in turn, through client and returns
// the sample. A request is OK only if answered 200 with its target's body
// (a degraded answer is a failure), and shed if answered 503 with a
// Retry-After header, the answer of an instance over its -max-inflight.
func AttackOpen(ctx context.Context, client *http.Client, targets []Target, load OpenLoad) OpenSample {
	var (
		mu sync.Mutex
		s  OpenSample
		wg sync.WaitGroup
	)
	s.ok.latencies = make([]time.Duration, 0, 1<<16)
	record := func(o outcome, latency time.Duration, failure string) {
		mu.Lock()
		defer mu.Unlock()
		switch o {
		case answeredOK:
			s.OK++
			s.ok.latencies = append(s.ok.latencies, latency)
			s.ok.Requests++
		case answeredShed:
			s.Shed++
		default:
			s.Failures++
			if s.FirstFailure == "" {
				s.FirstFailure = failure
			}
		}
	}
	// Outstanding workers, each awaiting one request at a time: an arrival
	// that finds none idle is not sent. Cheaper than a goroutine per
	// request, which on a host the generator shares with the system under
	// test is CPU taken from it.
	type arrival struct {
		t   Target
		due time.Time
	}
	arrivals := make(chan arrival)
	for range load.Outstanding {
		wg.Go(func() {
			for a := range arrivals {
				o, failure := fetchOnce(ctx, client, a.t)
				record(o, time.Since(a.due), failure)
			}
		})
	}
	interval := float64(time.Second) / float64(load.Rate)
	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for i := 0; ; i++ {
		due := start.Add(time.Duration(float64(i) * interval))
		if due.Sub(start) >= load.Duration || ctx.Err() != nil {
			break
		}
		// Late arrivals (the generator lost the CPU) are sent at once, so
		// the rate holds on average.
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
			case <-timer.C:
			}
		}
		s.Arrivals++
		select {
		case arrivals <- arrival{targets[i%len(targets)], due}:
		default:
			s.NotSent++
		}
	}
	close(arrivals)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	s.Elapsed = time.Since(start)
	return s
}

// fetchOnce sends one GET of t and classifies its answer.
func fetchOnce(ctx context.Context, client *http.Client, t Target) (outcome, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL, nil)
	if err != nil {
		return answeredFailed, err.Error()
	}
	resp, err := client.Do(req)
	if err != nil {
		return answeredFailed, fmt.Sprintf("GET %s: %v", t.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch {
	case err != nil:
		return answeredFailed, fmt.Sprintf("GET %s: read: %v", t.URL, err)
	case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "":
		return answeredShed, ""
	case resp.StatusCode != http.StatusOK:
		return answeredFailed, fmt.Sprintf("GET %s: status %d: %s", t.URL, resp.StatusCode, bytes.TrimSpace(body))
	case bytes.Equal(body, t.Want) || sameJSON(body, t.Want):
		return answeredOK, ""
	}
	return answeredFailed, fmt.Sprintf("GET %s: got %s, want %s", t.URL, bytes.TrimSpace(body), bytes.TrimSpace(t.Want))
}

// NewOpenLoadClient returns the open loop's client for one system: an
// idle pool as deep as the bound on outstanding requests, so that a burst
// does not close connections it will need again a moment later.
func NewOpenLoadClient(outstanding int) *http.Client {
	c := NewLoadClient()
	tr := c.Transport.(*http.Transport)
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = outstanding, outstanding
	return c
}
