package bench

import (
	"context"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	httptransport "github.com/go-kit/kit/transport/http"
	vegeta "github.com/tsenart/vegeta/v12/lib"

	"movieexample.com/movie"
)

// floor starts the fan-out floor on httptest servers: two instances of each
// backend behind the reference gateway.
func floor(t *testing.T) *httptest.Server {
	t.Helper()
	addrs := func(h http.Handler) []string {
		var as []string
		for range 2 {
			s := httptest.NewServer(h)
			t.Cleanup(s.Close)
			as = append(as, s.Listener.Addr().String())
		}
		return as
	}
	gw := httptest.NewServer(&Gateway{MetadataTransport: NewTransport(), RatingTransport: NewTransport(), Metadata: Fixed(addrs(MetadataBackend())...), Rating: Fixed(addrs(RatingBackend())...)})
	t.Cleanup(gw.Close)
	return gw
}

func TestFloorAnswersAsMovie(t *testing.T) {
	gw := floor(t)
	targets, err := Targets(gw.URL, ids, want)
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range targets {
		t.Run(tg.URL, func(t *testing.T) {
			resp, err := http.Get(tg.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || string(body) != string(tg.Want) {
				t.Errorf("got %d %s, want 200 %s", resp.StatusCode, body, tg.Want)
			}
		})
	}
	resp, err := http.Get(gw.URL + "/movie?id=unknown")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown id: got %d, want 404", resp.StatusCode)
	}
}

func TestWantHasSeedData(t *testing.T) {
	tests := []struct {
		id         string
		wantTitle  string
		wantRating bool
	}{
		{"1", "The Shawshank Redemption", true},
		{"5", "Seven Samurai", false}, // the seed's unrated movie
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			d := want(tt.id)
			if d.Metadata.Title != tt.wantTitle || (d.Rating != nil) != tt.wantRating {
				t.Errorf("got %+v, want title %q, rating present %v", d, tt.wantTitle, tt.wantRating)
			}
		})
	}
}

func TestAttackCountsEveryRequestAndFailure(t *testing.T) {
	gw := floor(t)
	good, err := Targets(gw.URL, ids, want)
	if err != nil {
		t.Fatal(err)
	}
	// The same request with the wrong expected answer: every one must
	// count as a failure.
	bad, err := Targets(gw.URL, []string{"1"}, func(string) movie.Details { return want("2") })
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		targets  []Target
		failures bool
	}{
		{"right answers", good, false},
		{"wrong answers", bad, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Attack(context.Background(), NewLoadClient(), tt.targets, Load{Connections: 4, Duration: 200 * time.Millisecond})
			if s.Requests == 0 || len(s.latencies) != s.Requests {
				t.Fatalf("got %d requests and %d latencies, want as many of each, at least one", s.Requests, len(s.latencies))
			}
			if got := s.Failures; (got > 0) != tt.failures || (tt.failures && got != s.Requests) {
				t.Errorf("got %d of %d failed (first: %s), want failures: %v", got, s.Requests, s.FirstFailure, tt.failures)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	want := []byte(`{"metadata":{"id":"1","title":"T","description":"","director":""},"rating":4.5}` + "\n")
	tests := []struct {
		name string
		res  vegeta.Result
		ok   bool
	}{
		{"same bytes", vegeta.Result{Code: 200, Body: want}, true},
		{"same JSON, other spelling", vegeta.Result{Code: 200, Body: []byte(`{"rating":4.5, "metadata":{"title":"T","id":"1"}}`)}, true},
		{"degraded answer", vegeta.Result{Code: 200, Body: []byte(`{"metadata":{"id":"1","title":"T"},"partial":["rating"]}`)}, false},
		{"error status", vegeta.Result{Code: 503, Body: []byte(`{"error":"unavailable"}`)}, false},
		{"no answer", vegeta.Result{Error: "connection refused"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if msg := check(&tt.res, want); (msg == "") != tt.ok {
				t.Errorf("check: %q, want ok %v", msg, tt.ok)
			}
		})
	}
}

func TestQuantile(t *testing.T) {
	var s Sample
	for i := 100; i >= 1; i-- { // unsorted on purpose
		s.latencies = append(s.latencies, time.Duration(i)*time.Millisecond)
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{
		{0.5, 50 * time.Millisecond},
		{0.9, 90 * time.Millisecond},
		{0.99, 99 * time.Millisecond},
		{1, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := s.Quantile(tt.q); got != tt.want {
			t.Errorf("Quantile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
}

func TestSpreadPairsRoundsInOrder(t *testing.T) {
	tests := []struct {
		a, b []float64
		want string
	}{
		{[]float64{9, 12, 10}, []float64{10, 10, 10}, "rounds 0.90x to 1.20x"},
		// Paired in order (9/10, 12/12), not the extremes of each side
		// (9/12, 12/10).
		{[]float64{9, 12}, []float64{10, 12}, "rounds 0.90x to 1.00x"},
		{[]float64{8, 9}, []float64{10, 10, 10}, "rounds 0.80x to 0.90x"},
		{[]float64{9}, []float64{10}, ""}, // one round has no spread
		{nil, nil, ""},
	}
	for _, tt := range tests {
		if got := spread(tt.a, tt.b); got != tt.want {
			t.Errorf("spread(%v, %v) = %q, want %q", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestProcReadsThisProcess(t *testing.T) {
	rss, err := peakRSS(os.Getpid())
	if err != nil || rss <= 0 {
		t.Errorf("peakRSS = %d, %v; want a positive size", rss, err)
	}
	if _, err := cpuTime(os.Getpid()); err != nil {
		t.Errorf("cpuTime: %v", err)
	}
	if _, err := peakRSS(-1); err == nil {
		t.Error("peakRSS(-1): got no error")
	}
}

func TestServeUnknownRole(t *testing.T) {
	if err := Serve(context.Background(), "nope", nil, io.Discard); !errors.Is(err, ErrUnknownRole) {
		t.Errorf("got %v, want ErrUnknownRole", err)
	}
}

// The bytes the harness expects are the bytes movie's go-kit encoder writes,
// so the fast byte comparison holds for every good answer.
func TestTargetsEncodeAsMovie(t *testing.T) {
	ts, err := Targets("http://x", ids, want)
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		rec := httptest.NewRecorder()
		if err := httptransport.EncodeJSONResponse(context.Background(), rec, want(id)); err != nil {
			t.Fatal(err)
		}
		if got := rec.Body.String(); got != string(ts[i].Want) {
			t.Errorf("id %s: go-kit writes %q, harness expects %q", id, got, ts[i].Want)
		}
	}
}

func TestLineupTakesMovieBRightAfterMovie(t *testing.T) {
	floor, mv, b, lookup := &system{name: "floor"}, &system{name: "movie"}, &system{name: "movie B"}, &system{name: "lookup"}
	appB := &system{name: "movieapp B"}
	t1, t100 := &system{name: "movie traced 1%"}, &system{name: "movie traced 100%"}
	tests := []struct {
		name                      string
		l                         lineup
		wantInTurn, wantFixedRate string
	}{
		{"without movie B", lineup{floor: floor, movie: mv, lookup: lookup}, "floor movie lookup", "floor movie"},
		{"with movie B", lineup{floor: floor, movie: mv, variants: []*system{b}, lookup: lookup}, "floor movie movie B lookup", "floor movie movie B"},
		{"with movie B and traced movies", lineup{floor: floor, movie: mv, variants: []*system{b, t1, t100}, lookup: lookup},
			"floor movie movie B movie traced 1% movie traced 100% lookup", "floor movie movie B movie traced 1% movie traced 100%"},
		{"with movieapp B", lineup{floor: floor, movie: mv, variants: []*system{appB}, lookup: lookup}, "floor movie movieapp B lookup", "floor movie movieapp B"},
		{"with movie B, movieapp B and traced movies", lineup{floor: floor, movie: mv, variants: []*system{b, appB, t1, t100}, lookup: lookup},
			"floor movie movie B movieapp B movie traced 1% movie traced 100% lookup", "floor movie movie B movieapp B movie traced 1% movie traced 100%"},
	}
	names := func(ss []*system) string {
		var ns []string
		for _, s := range ss {
			ns = append(ns, s.name)
		}
		return strings.Join(ns, " ")
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := names(tt.l.inTurn()); got != tt.wantInTurn {
				t.Errorf("inTurn: got %q, want %q", got, tt.wantInTurn)
			}
			if got := names(tt.l.atFixedRate()); got != tt.wantFixedRate {
				t.Errorf("atFixedRate: got %q, want %q", got, tt.wantFixedRate)
			}
		})
	}
}

// measured is a system whose closed-loop rounds ran at rates, one second
// each, and whose fixed-rate rounds had p99s (in ms).
func measured(rates []float64, p99s ...float64) *system {
	s := &system{roundRates: rates}
	for _, r := range rates {
		s.closed.Add(Sample{Requests: int(r), Elapsed: time.Second})
	}
	for _, p := range p99s {
		d := time.Duration(p * float64(time.Millisecond))
		s.fixed.Add(Sample{latencies: []time.Duration{d}})
		s.roundP99s = append(s.roundP99s, float64(d))
	}
	return s
}

func named(name string, s *system) *system {
	s.name = name
	return s
}

// lines returns out's lines with their runs of spaces made one, so that a
// want does not depend on the tabwriter's padding.
func lines(out string) []string {
	var ls []string
	for l := range strings.Lines(out) {
		ls = append(ls, strings.Join(strings.Fields(l), " "))
	}
	return ls
}

func TestRatiosOfMovieBOverMovie(t *testing.T) {
	refs := lineup{
		floor:  measured([]float64{1000, 1000}, 2, 2),
		movie:  measured([]float64{900, 1000}, 3, 2),
		lookup: measured([]float64{100, 100}),
	}
	withB := refs
	withB.variants = []*system{named("movie B", measured([]float64{990, 1050}, 3.3, 1.8))}
	withBoth := withB
	withBoth.variants = append(slices.Clone(withB.variants), named("movieapp B", measured([]float64{810, 1100}, 6, 1)))
	withOneRound := lineup{floor: measured([]float64{1000}, 2), movie: measured([]float64{1000}, 2),
		variants: []*system{named("movie B", measured([]float64{1100}, 2.2))}, lookup: measured([]float64{100})}
	tests := []struct {
		name      string
		l         lineup
		wantRates []string
		wantP99s  []string
	}{
		{"without movie B", refs,
			[]string{
				"movie / fan-out floor 0.95x target >= 0.90x: met rounds 0.90x to 1.00x",
				"movie / per-request lookup 9.50x target >= 6x: met rounds 9.00x to 10.00x",
			},
			[]string{"movie p99 / floor p99 1.50x target <= 1.5x: met rounds 1.00x to 1.50x"},
		},
		{"with movie B", withB,
			[]string{
				"movie / fan-out floor 0.95x target >= 0.90x: met rounds 0.90x to 1.00x",
				"movie / per-request lookup 9.50x target >= 6x: met rounds 9.00x to 10.00x",
				// 2040/1900 pooled; paired by round: 990/900 and 1050/1000.
				"movie B / movie 1.07x rounds 1.05x to 1.10x",
			},
			[]string{
				"movie p99 / floor p99 1.50x target <= 1.5x: met rounds 1.00x to 1.50x",
				"movie B p99 / movie p99 1.10x rounds 0.90x to 1.10x",
			},
		},
		{"with movie B and movieapp B", withBoth,
			[]string{
				"movie / fan-out floor 0.95x target >= 0.90x: met rounds 0.90x to 1.00x",
				"movie / per-request lookup 9.50x target >= 6x: met rounds 9.00x to 10.00x",
				"movie B / movie 1.07x rounds 1.05x to 1.10x",
				// 1910/1900 pooled; paired by round: 810/900 and 1100/1000.
				"movieapp B / movie 1.01x rounds 0.90x to 1.10x",
			},
			[]string{
				"movie p99 / floor p99 1.50x target <= 1.5x: met rounds 1.00x to 1.50x",
				"movie B p99 / movie p99 1.10x rounds 0.90x to 1.10x",
				// The pooled p99 is the worst of these single latencies.
				"movieapp B p99 / movie p99 2.00x rounds 0.50x to 2.00x",
			},
		},
		{"one round has no spread", withOneRound,
			[]string{
				"movie / fan-out floor 1.00x target >= 0.90x: met",
				"movie / per-request lookup 10.00x target >= 6x: met",
				"movie B / movie 1.10x",
			},
			[]string{"movie p99 / floor p99 1.00x target <= 1.5x: met", "movie B p99 / movie p99 1.10x"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rates, p99s strings.Builder
			throughputRatios(&rates, tt.l)
			p99Ratios(&p99s, Config{}, tt.l)
			if got := lines(rates.String()); !slices.Equal(got, tt.wantRates) {
				t.Errorf("throughput ratios: got %q, want %q", got, tt.wantRates)
			}
			if got := lines(p99s.String()); !slices.Equal(got, tt.wantP99s) {
				t.Errorf("p99 ratios: got %q, want %q", got, tt.wantP99s)
			}
		})
	}
}

func TestHeaderSaysWhereBIsFrom(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		wants []string
	}{
		{"movie B", Config{MovieB: "/tmp/movie-b"}, []string{"movie B is /tmp/movie-b;"}},
		{"movieapp B", Config{BuildB: "/tmp/old-bin"}, []string{"movieapp B is the movie, metadata and rating of /tmp/old-bin,", "right after movie\n"}},
		{"both", Config{MovieB: "/tmp/movie-b", BuildB: "/tmp/old-bin"}, []string{"movie B is /tmp/movie-b;", "of /tmp/old-bin,", "right after movie and movie B\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			header(&out, tt.cfg, "0.00")
			for _, w := range tt.wants {
				if !strings.Contains(out.String(), w) {
					t.Errorf("header lacks %q:\n%s", w, out.String())
				}
			}
			if tt.cfg.BuildB == "" && strings.Contains(out.String(), "movieapp B") {
				t.Errorf("header names movieapp B without one:\n%s", out.String())
			}
		})
	}
}

// movieapp B's services are judged against the RSS target as movie's are;
// its Consul, as movie's, is not.
func TestPeakRSSJudgesMovieappBServices(t *testing.T) {
	self := os.Getpid()
	var out strings.Builder
	peakRSSTable(&out, []process{{name: "B movie", pid: self}, {name: "B metadata-2", pid: self}, {name: "B rating-1", pid: self}, {name: "B consul", pid: self}, {name: "consul", pid: self}})
	judged := map[string]bool{}
	for _, l := range lines(out.String()) {
		if name, _, ok := strings.Cut(l, " MB"); ok {
			f := strings.Fields(name)
			judged[strings.Join(f[:len(f)-1], " ")] = strings.Contains(l, "target <")
		}
	}
	want := map[string]bool{"B movie": true, "B metadata-2": true, "B rating-1": true, "B consul": false, "consul": false}
	if !maps.Equal(judged, want) {
		t.Errorf("judged against the target: got %v, want %v\n%s", judged, want, out.String())
	}
}

func TestProfileName(t *testing.T) {
	tests := map[string]string{"movie": "movie", "movie traced 1%": "movie-traced-1", "movieapp B": "movieapp-b", "B metadata": "b-metadata"}
	for name, want := range tests {
		if got := profileName(name); got != want {
			t.Errorf("profileName(%q) = %q, want %q", name, got, want)
		}
	}
}

// TestAttackOpenClassifiesAnswers: every arrival is sent (the bound is
// never reached) and counted once, as OK, shed or failed.
func TestAttackOpenClassifiesAnswers(t *testing.T) {
	var good map[string][]byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch id := r.URL.Query().Get("id"); id {
		case "2": // over its limit
			w.Header().Set("Retry-After", "1")
			http.Error(w, `{"error":"overloaded; retry later"}`, http.StatusServiceUnavailable)
		case "3": // unavailable, without being told to come back
			http.Error(w, `{"error":"service unavailable"}`, http.StatusServiceUnavailable)
		case "4": // a wrong answer
			io.WriteString(w, `{"metadata":{"id":"4"}}`)
		default:
			w.Write(good[id])
		}
	}))
	t.Cleanup(srv.Close)
	targets, err := Targets(srv.URL, ids, want)
	if err != nil {
		t.Fatal(err)
	}
	good = map[string][]byte{"1": targets[0].Want, "5": targets[4].Want}
	// 30 arrivals, 6 of each id; the bound is above them all.
	load := OpenLoad{Rate: 100, Duration: 300 * time.Millisecond, Outstanding: 1000}
	s := AttackOpen(context.Background(), NewOpenLoadClient(load.Outstanding), targets, load)
	got := [5]int{s.Arrivals, s.NotSent, s.OK, s.Shed, s.Failures}
	if want := [5]int{30, 0, 12, 6, 12}; got != want {
		t.Errorf("arrivals, not sent, OK, shed, failures = %v, want %v (first failure: %s)", got, want, s.FirstFailure)
	}
	if s.ok.Requests != s.OK || len(s.ok.latencies) != s.OK {
		t.Errorf("%d admitted latencies for %d OK answers", len(s.ok.latencies), s.OK)
	}
}
