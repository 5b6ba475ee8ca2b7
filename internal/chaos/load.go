package chaos

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Outcome classifies one answer of movie.
type Outcome int

// Outcomes: a full answer, a 200 with the rating marked missing, and a
// failure (transport error, non-200 status or an answer without metadata).
const (
	Full Outcome = iota
	Degraded
	Failed
)

// answer is one request of the load: when it was due, how long it took
// from then, and what came back.
type answer struct {
	due     time.Time
	latency time.Duration
	outcome Outcome
	detail  string // why it failed
}

// load sends GET /movie at a fixed rate, each request on its own goroutine
// at the time it is due: open loop, so a slow answer never delays the next
// request and latency is measured from when the request was due, not from
// when a busy client got round to it.
type load struct {
	client *http.Client
	base   string
	rate   float64
	rng    *rand.Rand // used by the scheduling goroutine only

	mu      sync.Mutex
	answers []answer

	stop     chan struct{}
	schedule sync.WaitGroup
	inflight sync.WaitGroup
}

// newClient returns the harness's HTTP client: a pool big enough that an
// open-loop burst does not queue on a few connections, and a timeout that
// turns a hung request into a failure instead of a stalled scenario.
func newClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: time.Second}).DialContext,
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 1024,
			IdleConnTimeout:     30 * time.Second,
		},
	}
}

// startLoad starts sending to movie at addr; ids are drawn from the seed
// catalogue ("1" to "5"; "5" has no rating, which is a full answer).
func startLoad(client *http.Client, addr string, rate float64, seed uint64) *load {
	l := &load{
		client: client,
		base:   "http://" + addr + "/movie?id=",
		rate:   rate,
		rng:    rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		stop:   make(chan struct{}),
	}
	l.schedule.Add(1)
	go l.run()
	return l
}

func (l *load) run() {
	defer l.schedule.Done()
	interval := time.Duration(float64(time.Second) / l.rate)
	start := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
	for i := 0; ; i++ {
		due := start.Add(time.Duration(i) * interval)
		t.Reset(time.Until(due))
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		id := strconv.Itoa(1 + l.rng.IntN(5))
		l.inflight.Add(1)
		go func() {
			defer l.inflight.Done()
			a := fetch(l.client, l.base+id)
			a.due = due
			a.latency = time.Since(due)
			l.mu.Lock()
			l.answers = append(l.answers, a)
			l.mu.Unlock()
		}()
	}
}

// movieAnswer is the part of movie's answer the harness checks.
type movieAnswer struct {
	Metadata struct {
		Title string `json:"title"`
	} `json:"metadata"`
	Partial []string `json:"partial"`
}

// fetch asks movie for one movie and classifies the answer.
func fetch(client *http.Client, url string) answer {
	resp, err := client.Get(url)
	if err != nil {
		return answer{outcome: Failed, detail: err.Error()}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch {
	case err != nil:
		return answer{outcome: Failed, detail: "reading body: " + err.Error()}
	case resp.StatusCode != http.StatusOK:
		return answer{outcome: Failed, detail: fmt.Sprintf("status %d: %.200s", resp.StatusCode, bytes.TrimSpace(body))}
	}
	var m movieAnswer
	if err := json.Unmarshal(body, &m); err != nil || m.Metadata.Title == "" {
		return answer{outcome: Failed, detail: fmt.Sprintf("200 without metadata: %.200s", body)}
	}
	if len(m.Partial) > 0 {
		return answer{outcome: Degraded}
	}
	return answer{outcome: Full}
}

// finish stops sending, waits for the requests in flight and returns every
// answer in the order they were due.
func (l *load) finish() []answer {
	close(l.stop)
	l.schedule.Wait()
	l.inflight.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	slices.SortFunc(l.answers, func(a, b answer) int { return a.due.Compare(b.due) })
	return l.answers
}

// Latencies summarises the latency of a scenario's answers.
type Latencies struct {
	P50, P99, Max time.Duration
}

func summarize(answers []answer, keep func(answer) bool) Latencies {
	var ds []time.Duration
	for _, a := range answers {
		if keep == nil || keep(a) {
			ds = append(ds, a.latency)
		}
	}
	if len(ds) == 0 {
		return Latencies{}
	}
	slices.Sort(ds)
	// Nearest rank: the smallest latency at least p of the answers had.
	q := func(p float64) time.Duration { return ds[int(math.Ceil(p*float64(len(ds))))-1] }
	return Latencies{P50: q(0.50), P99: q(0.99), Max: ds[len(ds)-1]}
}
