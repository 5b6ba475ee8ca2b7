package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/sd"
	"github.com/prometheus/client_golang/prometheus"

	"movieexample.com/pkg/errs"
	"movieexample.com/pkg/routing"
)

// counting is a factory whose endpoint for an instance counts its calls
// and answers with the instance's name; an instance in fail answers
// Unavailable, one in block waits until the channel closes.
type counting struct {
	mu    sync.Mutex
	calls map[string]int
	fail  map[string]bool
	block map[string]chan struct{}
	in    chan string // told of every blocked call's arrival
}

func newCounting() *counting {
	return &counting{calls: map[string]int{}, fail: map[string]bool{}, block: map[string]chan struct{}{}, in: make(chan string, 100)}
}

func (c *counting) factory(instance string) (endpoint.Endpoint, io.Closer, error) {
	return func(ctx context.Context, _ any) (any, error) {
		c.mu.Lock()
		c.calls[instance]++
		fail, block := c.fail[instance], c.block[instance]
		c.mu.Unlock()
		if block != nil {
			c.in <- instance
			select {
			case <-block:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if fail {
			return nil, errs.New(errs.Unavailable, "down")
		}
		return instance, nil
	}, nil, nil
}

func (c *counting) count(instance string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[instance]
}

// balanced returns an Upstream over instances with cfg, its members made.
func balanced(t *testing.T, c *counting, cfg Config, instances ...string) *Upstream {
	t.Helper()
	u := New("rating", c.factory, cfg, NewMetrics(prometheus.NewRegistry()), quietLogger())
	u.Watch(fixedInstancer(instances))
	t.Cleanup(u.Stop)
	waitReady(t, u, "members made", func(err error) bool { return err == nil })
	return u
}

// calls makes n calls and returns how many each instance answered.
func calls(t *testing.T, u *Upstream, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		resp, err := u.Endpoint()(context.Background(), nil)
		if err != nil {
			t.Fatalf("call: %v", err)
		}
		got[resp.(string)]++
	}
	return got
}

// within checks that share of n is p, within tol: the tolerances below
// are at least six standard deviations of a binomial share, so a correct
// balancer fails one in hundreds of millions of runs.
func within(t *testing.T, what string, share, n int, p, tol float64) {
	t.Helper()
	got := float64(share) / float64(n)
	if sd := math.Sqrt(p * (1 - p) / float64(n)); tol < 6*sd {
		t.Fatalf("%s: tolerance %.4f is under six standard deviations (%.4f): the test would be flaky", what, tol, 6*sd)
	}
	if math.Abs(got-p) > tol {
		t.Errorf("%s: share %.4f (%d of %d), want %.2f ± %.2f", what, got, share, n, p, tol)
	}
}

func TestWeightedRandom(t *testing.T) {
	light := routing.With("rating/a@127.0.0.1:1", routing.Attrs{Weight: 1})
	heavy := routing.With("rating/b@127.0.0.1:2", routing.Attrs{Weight: 9})
	c := newCounting()
	u := balanced(t, c, DefaultConfig(), light, heavy)
	const n = 20000
	got := calls(t, u, n)
	within(t, "weight 9 of 10", got["rating/b@127.0.0.1:2"], n, 0.9, 0.015)
	// The factory is called with the instance alone, its attributes stripped.
	if c.count("rating/a@127.0.0.1:1") == 0 || c.count("rating/b@127.0.0.1:2") == 0 {
		t.Errorf("the factory was not given the bare instance strings: %v", c.calls)
	}
}

func TestCanarySplit(t *testing.T) {
	stable1, stable2 := "rating/s1@127.0.0.1:1", "rating/s2@127.0.0.1:2"
	canary := routing.With("rating/c@127.0.0.1:3", routing.Attrs{Tags: []string{"v2", "canary"}})
	const n = 20000
	for _, pct := range []float64{5, 50, 100} {
		t.Run(fmt.Sprintf("%g percent", pct), func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.CanaryTag, cfg.CanaryPercent = "canary", pct
			u := balanced(t, newCounting(), cfg, stable1, stable2, canary)
			got := calls(t, u, n)
			canary, _ := routing.Split(canary)
			if pct == 100 {
				if got[canary] != n {
					t.Errorf("canary at 100%%: %d of %d calls", got[canary], n)
				}
				return
			}
			within(t, "canary", got[canary], n, pct/100, 0.025)
			// The rest spreads over the others as without a canary.
			within(t, "first of the others", got[stable1], got[stable1]+got[stable2], 0.5, 0.035)
		})
	}
	t.Run("no canary instance", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.CanaryTag, cfg.CanaryPercent = "canary", 50
		got := calls(t, balanced(t, newCounting(), cfg, stable1, stable2), 1000)
		if got[stable1]+got[stable2] != 1000 {
			t.Errorf("calls %v, want all 1000 on the others", got)
		}
	})
	t.Run("only canaries", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.CanaryTag, cfg.CanaryPercent = "canary", 5
		bare, _ := routing.Split(canary)
		if got := calls(t, balanced(t, newCounting(), cfg, canary), 1000); got[bare] != 1000 {
			t.Errorf("calls %v, want all 1000 on the canary, the one instance there is", got)
		}
	})
	t.Run("a failing canary's calls are retried on the others", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.CanaryTag, cfg.CanaryPercent = "canary", 50
		cfg.MinRetriesPerSecond = 1e6 // this test is about where retries go, not how many
		c := newCounting()
		bare, _ := routing.Split(canary)
		c.fail[bare] = true
		got := calls(t, balanced(t, c, cfg, stable1, stable2, canary), 1000)
		if got[bare] != 0 || got[stable1]+got[stable2] != 1000 {
			t.Errorf("answers %v: want every call answered by the others", got)
		}
		// Its breaker ejected it after five failures in a row.
		if tried := c.count(bare); tried < cfg.BreakerFailures || tried > 100 {
			t.Errorf("the failing canary was tried %d times: want its breaker to eject it after %d", tried, cfg.BreakerFailures)
		}
	})
}

// TestP2CAvoidsBusyInstance: with one instance holding calls in flight and
// the other none, the power of two choices sends every new call to the idle
// one, where random sends it half.
func TestP2CAvoidsBusyInstance(t *testing.T) {
	busy, idle := "rating/busy@127.0.0.1:1", "rating/idle@127.0.0.1:2"
	for _, b := range []Balancer{P2C, Random} {
		t.Run(string(b), func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Balancer = b
			u := balanced(t, newCounting(), cfg, busy, idle)
			for _, m := range u.set.Load().all {
				if m.instance == busy {
					m.inflight.Add(3) // as three slow calls would
				}
			}
			const n = 2000
			got := calls(t, u, n)
			switch b {
			case P2C:
				if got[busy] != 0 {
					t.Errorf("p2c: %d of %d calls to the busy instance, want none", got[busy], n)
				}
			case Random:
				within(t, "random: busy instance", got[busy], n, 0.5, 0.07)
			}
		})
	}
}

// TestP2CEWMAPicksLowerCost: p2c-ewma takes the instance whose latency
// estimate times its calls in flight, plus one, is lower: the faster one,
// until it holds so many calls that the slower one costs less.
func TestP2CEWMAPicksLowerCost(t *testing.T) {
	slow, fast := "rating/slow@127.0.0.1:1", "rating/fast@127.0.0.1:2"
	cfg := DefaultConfig()
	cfg.Balancer = P2CEWMA
	u := balanced(t, newCounting(), cfg, slow, fast)
	set := u.set.Load()
	now := time.Now()
	var fastNode *node
	for _, m := range set.all {
		d := time.Millisecond
		if m.instance == slow {
			d = 20 * time.Millisecond
		} else {
			fastNode = m.node
		}
		m.latency.observe(d, now)
	}
	picks := func() (n int) {
		for range 1000 {
			var r rotation
			r.start(set, &u.cfg)
			if m, _, _ := r.next(); m.instance == slow {
				n++
			}
		}
		return n
	}
	if n := picks(); n != 0 {
		t.Errorf("1ms and 20ms, none in flight: %d of 1000 picks the slow instance, want none", n)
	}
	fastNode.inflight.Add(30) // 1ms x 31 against 20ms x 1
	if n := picks(); n != 1000 {
		t.Errorf("the fast instance holding 30 calls: %d of 1000 picks the slow instance, want all", n)
	}
	fastNode.inflight.Add(-30)
	// A new instance, nothing measured yet, already holding a call: it
	// costs more than any measured one, so a new instance that hangs is not
	// sent every call it is drawn for.
	for _, m := range set.all {
		if m.instance == slow {
			m.latency = &peakEWMA{stamp: now}
			m.inflight.Add(1)
			defer m.inflight.Add(-1)
		}
	}
	if n := picks(); n != 0 {
		t.Errorf("a new instance holding a call: %d of 1000 picks it, want none", n)
	}
}

// TestP2CEWMAFailureCostsTheTimeout: an attempt that fails at once counts
// as one that took the whole attempt timeout, so an instance that fails or
// sheds fast does not look fast; a not-found answer is an answer and counts
// as what it took.
func TestP2CEWMAFailureCostsTheTimeout(t *testing.T) {
	const timeout = 500 * time.Millisecond
	for _, tc := range []struct {
		err  error
		want bool // the estimate is the timeout
	}{
		{errs.New(errs.Unavailable, "down"), true},
		{fmt.Errorf("rating: %w", errs.ErrOverloaded), true},
		{errs.New(errs.NotFound, "no such movie"), false},
		{nil, false},
		{context.Canceled, false}, // the caller gave up: not counted at all
	} {
		n := &node{weight: 1, latency: &peakEWMA{stamp: time.Now()},
			ep: func(context.Context, any) (any, error) { return nil, tc.err }}
		_, _ = n.call(context.Background(), nil, timeout)
		// The stored estimate: a read decays it with the time since.
		if got := time.Duration(n.latency.ns); (got >= timeout) != tc.want {
			t.Errorf("after an attempt that returned %v: estimate %v, want the timeout: %v", tc.err, got, tc.want)
		}
	}
}

// TestPeakEWMA: a longer attempt sets the estimate at once, shorter ones
// pull it down over ewmaDecay, and it decays toward zero while unobserved.
func TestPeakEWMA(t *testing.T) {
	t0 := time.Now()
	e := &peakEWMA{stamp: t0}
	e.observe(time.Millisecond, t0)
	e.observe(20*time.Millisecond, t0.Add(time.Millisecond))
	if got := e.estimate(t0.Add(time.Millisecond)); got != float64(20*time.Millisecond) {
		t.Errorf("after a 20ms attempt: estimate %v, want 20ms at once", time.Duration(got))
	}
	e.observe(time.Millisecond, t0.Add(time.Millisecond+ewmaDecay))
	want := 1e6 + (20e6-1e6)/math.E
	if got := e.estimate(t0.Add(time.Millisecond + ewmaDecay)); math.Abs(got-want) > 1 {
		t.Errorf("a 1ms attempt one decay later: estimate %v, want %v", time.Duration(got), time.Duration(want))
	}
	if got := e.estimate(t0.Add(time.Millisecond + 2*ewmaDecay)); math.Abs(got-want/math.E) > 1 {
		t.Errorf("one decay unobserved: estimate %v, want %v", time.Duration(got), time.Duration(want/math.E))
	}
}

// TestP2CAvoidsSheddingInstance: an instance that shed a call lately holds
// few calls in flight, because it answers them at once with a 503; p2c
// counts it busier than one that did not shed, for shedHold, then compares
// calls in flight again.
func TestP2CAvoidsSheddingInstance(t *testing.T) {
	shedding, other := "rating/shedding@127.0.0.1:1", "rating/other@127.0.0.1:2"
	cfg := DefaultConfig()
	cfg.Balancer = P2C
	u := balanced(t, newCounting(), cfg, shedding, other)
	var shed, busy *node
	for _, m := range u.set.Load().all {
		if m.instance == shedding {
			shed = m.node
		} else {
			busy = m.node
		}
	}
	busy.inflight.Add(3) // fewer in flight on the shedding one
	defer busy.inflight.Add(-3)
	_, _ = shed.call(context.Background(), nil, time.Second) // answers; sheds nothing
	if shed.shedAt.Load() != 0 {
		t.Fatal("an answered call recorded a shed")
	}
	shed.ep = func(context.Context, any) (any, error) { return nil, fmt.Errorf("rating: %w", errs.ErrOverloaded) }
	_, _ = shed.call(context.Background(), nil, time.Second)
	if shed.shedAt.Load() == 0 {
		t.Fatal("a shed call was not recorded")
	}
	set := u.set.Load()
	picks := func() (n int) {
		for range 1000 {
			var r rotation
			r.start(set, &u.cfg)
			if m, _, _ := r.next(); m.instance == shedding {
				n++
			}
		}
		return n
	}
	if n := picks(); n != 0 {
		t.Errorf("%d of 1000 picks the instance that just shed, want none", n)
	}
	shed.shedAt.Store(clock() - int64(shedHold))
	if n := picks(); n != 1000 {
		t.Errorf("a shed longer ago than shedHold: %d of 1000 picks it, want all (it has fewer calls in flight)", n)
	}
}

// TestP2CWeighted: with no call in flight anywhere, p2c's draws follow the
// weights, and ties go to the first draw, so the heavier instance gets more
// calls than under an unweighted choice.
func TestP2CWeighted(t *testing.T) {
	light := "rating/a@127.0.0.1:1"
	heavy := routing.With("rating/b@127.0.0.1:2", routing.Attrs{Weight: 9})
	cfg := DefaultConfig()
	cfg.Balancer = P2C
	const n = 20000
	got := calls(t, balanced(t, newCounting(), cfg, light, heavy), n)
	// Two distinct draws from two instances are always both; the first
	// one, which wins a tie, is heavy 90% of the time.
	within(t, "p2c weight 9 of 10", got["rating/b@127.0.0.1:2"], n, 0.9, 0.015)
}

// TestRotationTriesEveryInstanceOnce: a call whose attempts all fail tries
// each instance once before any twice, whatever the weights.
func TestRotationTriesEveryInstanceOnce(t *testing.T) {
	c := newCounting()
	insts := []string{"rating/a@127.0.0.1:1", routing.With("rating/b@127.0.0.1:2", routing.Attrs{Weight: 50}), "rating/c@127.0.0.1:3"}
	for _, in := range insts {
		bare, _ := routing.Split(in)
		c.fail[bare] = true
	}
	cfg := DefaultConfig()
	cfg.MaxAttempts, cfg.Backoff, cfg.BreakerFailures, cfg.MinRetriesPerSecond = 3, 0, 0, 1e6
	u := balanced(t, c, cfg, insts...)
	for range 200 {
		if _, err := u.Endpoint()(context.Background(), nil); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("call: %v, want ErrUnavailable", err)
		}
	}
	for _, in := range insts {
		bare, _ := routing.Split(in)
		if got := c.count(bare); got != 200 {
			t.Errorf("%s tried %d times in 200 calls of 3 attempts, want 200", bare, got)
		}
	}
}

// TestEjectedInstanceCountedOnceARound: with one instance ejected and the
// other failing, a call spends all its attempts on the failing one; the
// ejected one, skipped once a round, never makes the call look as if every
// instance were ejected (which would fail a FailFast call early).
func TestEjectedInstanceCountedOnceARound(t *testing.T) {
	failing, ejected := "rating/a@127.0.0.1:1", "rating/b@127.0.0.1:2"
	c := newCounting()
	cfg := DefaultConfig()
	cfg.FailFast, cfg.MaxAttempts, cfg.Backoff, cfg.MinRetriesPerSecond = true, 3, 0, 1e6
	cfg.BreakerFailures, cfg.BreakerCooldown = 4, time.Hour
	u := balanced(t, c, cfg, failing, ejected)
	c.fail[ejected] = true
	for c.count(ejected) < cfg.BreakerFailures { // eject it: calls answered by the other
		if _, err := u.Endpoint()(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 50 {
		c.mu.Lock()
		c.fail[failing] = false
		c.mu.Unlock()
		// One success first, so its breaker starts each round closed.
		if _, err := u.Endpoint()(context.Background(), nil); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		c.mu.Lock()
		c.fail[failing] = true
		c.mu.Unlock()
		before := c.count(failing)
		_, err := u.Endpoint()(context.Background(), nil)
		if skipped(err) || !errors.Is(err, ErrUnavailable) {
			t.Fatalf("call %d: %v; want the failing instance's error, not a breaker's", i, err)
		}
		if got := c.count(failing) - before; got != cfg.MaxAttempts {
			t.Fatalf("call %d: the failing instance tried %d times, want every one of the %d attempts", i, got, cfg.MaxAttempts)
		}
	}
	if got := c.count(ejected); got != cfg.BreakerFailures {
		t.Errorf("the ejected instance was called %d times, want only the %d that ejected it", got, cfg.BreakerFailures)
	}
}

// TestManyInstances: past 64 instances (the rotation's one-word tried set)
// a call still tries each instance once before any twice.
func TestManyInstances(t *testing.T) {
	c := newCounting()
	var insts []string
	for i := range 100 {
		inst := fmt.Sprintf("rating/r%d@127.0.0.1:%d", i, 1000+i)
		insts = append(insts, inst)
		c.fail[inst] = true
	}
	cfg := DefaultConfig()
	cfg.MaxAttempts, cfg.Backoff, cfg.BreakerFailures, cfg.MinRetriesPerSecond = 100, 0, 0, 1e6
	u := balanced(t, c, cfg, insts...)
	if _, err := u.Endpoint()(context.Background(), nil); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("call: %v", err)
	}
	for _, in := range insts {
		if got := c.count(in); got != 1 {
			t.Fatalf("%s tried %d times in one call of 100 attempts over 100 instances, want once", in, got)
		}
	}
}

// closers is a factory that records which endpoints were closed.
type closers struct {
	mu     sync.Mutex
	made   map[string]int
	closed map[string]int
}

type closer struct {
	c    *closers
	inst string
}

func (c closer) Close() error {
	c.c.mu.Lock()
	defer c.c.mu.Unlock()
	c.c.closed[c.inst]++
	return nil
}

func (c *closers) factory(instance string) (endpoint.Endpoint, io.Closer, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.made[instance]++
	return func(context.Context, any) (any, error) { return instance, nil }, closer{c, instance}, nil
}

func (c *closers) counts(inst string) (made, closed int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.made[inst], c.closed[inst]
}

// TestSetKeepsEndpointsAcrossEvents: an instance that stays keeps its
// endpoint (and so its breaker and load) from one event to the next; one
// that leaves has its endpoint closed, and Stop closes the rest; calls made
// while the set changes see one set or the other (run under -race).
func TestSetKeepsEndpointsAcrossEvents(t *testing.T) {
	a, b, d := "rating/a@127.0.0.1:1", "rating/b@127.0.0.1:2", "rating/d@127.0.0.1:3"
	c := &closers{made: map[string]int{}, closed: map[string]int{}}
	in := &eventInstancer{now: sd.Event{Instances: []string{a, b}}}
	u := New("rating", c.factory, DefaultConfig(), NewMetrics(prometheus.NewRegistry()), quietLogger())
	u.Watch(in)
	waitReady(t, u, "first set made", func(err error) bool { return err == nil })

	stop := make(chan struct{})
	var callers sync.WaitGroup
	for range 4 {
		callers.Add(1)
		go func() {
			defer callers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := u.Endpoint()(context.Background(), nil); err != nil {
					t.Errorf("call while the set changes: %v", err)
					return
				}
			}
		}()
	}
	for i := range 200 {
		if i%2 == 0 {
			in.send(sd.Event{Instances: []string{a, d}})
		} else {
			in.send(sd.Event{Instances: []string{a, b}})
		}
	}
	in.send(sd.Event{Instances: []string{a, d}})
	waitFor := time.Now().Add(5 * time.Second)
	for {
		set := u.set.Load()
		if len(set.all) == 2 && set.all[1].instance == d {
			break
		}
		if time.Now().After(waitFor) {
			t.Fatal("the last event's set not made within 5s")
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	callers.Wait()

	if made, closed := c.counts(a); made != 1 || closed != 0 {
		t.Errorf("the instance that stayed: endpoint made %d times, closed %d; want made once, never closed", made, closed)
	}
	if made, closed := c.counts(b); made != closed {
		t.Errorf("the instance that left: made %d, closed %d; want each endpoint closed", made, closed)
	}
	u.Stop()
	for _, inst := range []string{a, d} {
		if made, closed := c.counts(inst); made != closed {
			t.Errorf("%s after Stop: made %d, closed %d", inst, made, closed)
		}
	}
}
