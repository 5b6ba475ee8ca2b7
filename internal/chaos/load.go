package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"movieexample.com/metadata"
	"movieexample.com/movie"
	"movieexample.com/rating"
)

// Outcome classifies one answer of movie.
type Outcome int

// Outcomes: a full answer, a 200 with the rating marked missing, a failure
// (transport error, non-200 status or an answer without metadata), a wrong
// answer, and a request whose client hung up before the answer came.
//
// A wrong answer is one that looks like an answer but is not the truth: a
// "not found" for a movie that exists, another movie's metadata, a rating
// other than the seeded one, or a 200 that leaves out a rating the movie
// has without saying so in "partial". A failure at least says something
// failed; a wrong answer is a silent one, which is why it is counted apart.
const (
	Full Outcome = iota
	Degraded
	Failed
	Wrong
	HungUp
)

func (o Outcome) String() string {
	switch o {
	case Full:
		return "full"
	case Degraded:
		return "degraded"
	case Failed:
		return "failed"
	case Wrong:
		return "wrong"
	case HungUp:
		return "hung up"
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// answer is one request of the load: when it was due, how long it took
// from then, and what came back.
type answer struct {
	due     time.Time
	latency time.Duration
	status  int // HTTP status; 0 without an answer
	outcome Outcome
	detail  string // why it failed or was wrong
}

// seeded is what movie must answer for one movie of the seed catalogue.
type seeded struct {
	title  string
	rating *float64 // nil: the movie has no rating, and none may be answered
}

// catalogue is the seed data every metadata and rating instance starts
// with (metadata.Seed, rating.Seed), by movie ID: the load asks only for
// these movies, and never writes, so every answer is checked against it.
var catalogue = seedCatalogue()

// catalogueIDs are the catalogue's IDs, sorted: the load draws from them.
var catalogueIDs = slices.Sorted(maps.Keys(catalogue))

func seedCatalogue() map[string]seeded {
	type sum struct{ total, n int }
	sums := map[string]sum{}
	for _, s := range rating.Seed {
		if s.Key.Type == rating.RecordTypeMovie {
			x := sums[s.Key.ID]
			sums[s.Key.ID] = sum{x.total + s.Value, x.n + 1}
		}
	}
	c := map[string]seeded{}
	for _, m := range metadata.Seed {
		e := seeded{title: m.Title}
		if x, ok := sums[m.ID]; ok {
			avg := float64(x.total) / float64(x.n)
			e.rating = &avg
		}
		c[m.ID] = e
	}
	return c
}

// ratingTolerance absorbs the rounding of an average computed by a store
// (SQL's AVG) rather than in Go; a wrong rating is off by far more.
const ratingTolerance = 1e-9

// Hang-ups: a client of the hang-up stream cancels its request this long
// after sending it, drawn uniformly in between; long enough for the
// request to reach movie, short enough that movie is still waiting on its
// upstreams (see the client-hangup scenario).
const (
	hangUpMin = time.Millisecond
	hangUpMax = 5 * time.Millisecond
)

// load sends GET /movie at a fixed rate, each request on its own goroutine
// at the time it is due: open loop, so a slow answer never delays the next
// request and latency is measured from when the request was due, not from
// when a busy client got round to it.
type load struct {
	client *http.Client
	base   string
	rate   float64
	rng    *rand.Rand // used by the scheduling goroutine only
	hangUp bool       // every client cancels its request shortly after sending it

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
	l := newLoad(client, addr, rate, seed)
	l.schedule.Add(1)
	go l.run()
	return l
}

// startHangUps starts a stream like startLoad's whose every client hangs
// up between hangUpMin and hangUpMax after sending its request.
func startHangUps(client *http.Client, addr string, rate float64, seed uint64) *load {
	l := newLoad(client, addr, rate, seed)
	l.hangUp = true
	l.schedule.Add(1)
	go l.run()
	return l
}

func newLoad(client *http.Client, addr string, rate float64, seed uint64) *load {
	return &load{
		client: client,
		base:   "http://" + addr + "/movie?id=",
		rate:   rate,
		rng:    rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		stop:   make(chan struct{}),
	}
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
		id := catalogueIDs[l.rng.IntN(len(catalogueIDs))]
		var hangUpAfter time.Duration
		if l.hangUp {
			hangUpAfter = hangUpMin + time.Duration(l.rng.Int64N(int64(hangUpMax-hangUpMin)))
		}
		l.inflight.Add(1)
		go func() {
			defer l.inflight.Done()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if hangUpAfter > 0 {
				t := time.AfterFunc(hangUpAfter, cancel)
				defer t.Stop()
			}
			a := fetch(ctx, l.client, l.base, id)
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
		ID    string `json:"id"`
		Title string `json:"title"`
	} `json:"metadata"`
	Rating  *float64 `json:"rating"`
	Partial []string `json:"partial"`
}

// fetch asks movie (base is its /movie?id= URL) for movie id, one of the
// catalogue's, and classifies the answer. A request that ends because ctx
// was canceled is a hang-up, whatever the error says.
func fetch(ctx context.Context, client *http.Client, base, id string) answer {
	var a answer
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+id, nil)
	if err != nil {
		a.outcome, a.detail = Failed, err.Error()
		return a
	}
	resp, err := client.Do(req)
	var body []byte
	if err == nil {
		defer resp.Body.Close()
		a.status = resp.StatusCode
		body, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	}
	switch {
	case err != nil && ctx.Err() != nil:
		a.outcome = HungUp
	case err != nil && a.status != 0:
		a.outcome, a.detail = Failed, "reading body: "+err.Error()
	case err != nil:
		a.outcome, a.detail = Failed, err.Error()
	default:
		a.outcome, a.detail = judge(id, a.status, body)
	}
	return a
}

// judge classifies movie's answer to a request for movie id against the
// seed catalogue.
func judge(id string, status int, body []byte) (Outcome, string) {
	want := catalogue[id]
	if status != http.StatusOK {
		detail := fmt.Sprintf("status %d: %.200s", status, bytes.TrimSpace(body))
		// Every movie the load asks for exists: "not found" is an upstream
		// that answered for something it is not, not an outage.
		if status == http.StatusNotFound || bytes.Contains(body, []byte("not found")) {
			return Wrong, fmt.Sprintf("movie %s exists, got %s", id, detail)
		}
		return Failed, detail
	}
	var m movieAnswer
	if err := json.Unmarshal(body, &m); err != nil || m.Metadata.Title == "" {
		return Failed, fmt.Sprintf("200 without metadata: %.200s", body)
	}
	switch {
	case m.Metadata.ID != id || m.Metadata.Title != want.title:
		return Wrong, fmt.Sprintf("asked for movie %s (%q), got %q (%q)", id, want.title, m.Metadata.ID, m.Metadata.Title)
	case slices.Contains(m.Partial, movie.PartRating):
		return Degraded, ""
	case want.rating == nil && m.Rating != nil:
		return Wrong, fmt.Sprintf("movie %s has no rating, got %v", id, *m.Rating)
	case want.rating != nil && m.Rating == nil:
		return Wrong, fmt.Sprintf("200 for movie %s without its rating (%v), and no partial: %.200s", id, *want.rating, body)
	case want.rating != nil && math.Abs(*m.Rating-*want.rating) > ratingTolerance:
		return Wrong, fmt.Sprintf("movie %s rated %v, seeded %v", id, *m.Rating, *want.rating)
	}
	return Full, ""
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

// Load is the harness's steady open-loop load on one movie, for tests that
// make their own changes under it (e2e/consulcluster changes Consul, not the
// services) and judge the answers as the scenarios do.
type Load struct{ l *load }

// StartLoad starts sending rate requests per second to movie at addr, for
// movies of the seed catalogue drawn with seed, through a client like the
// harness's own.
func StartLoad(addr string, rate float64, seed uint64) *Load {
	return &Load{l: startLoad(newClient(10*time.Second), addr, rate, seed)}
}

// Finish stops the load, waits for the requests in flight, and returns
// their tally as a Result called name: sent, failed and wrong answers with
// the first few details, latencies, and as Problems every failed, wrong or
// degraded answer (a lost rating counts as a problem).
func (l *Load) Finish(name string) *Result {
	r := &Result{Name: name}
	r.tally(l.l.finish(), false)
	r.LoadAvg = loadAvg()
	return r
}
