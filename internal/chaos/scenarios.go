package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Scenario is one kind of churn, run under load.
type Scenario struct {
	// Name is what the report and the -scenarios flag call it.
	Name string
	// Title says in a few words what happens.
	Title string

	// setup brings the environment to the state the scenario starts from,
	// before the load starts.
	setup func(ctx context.Context, e *Env) error
	// run makes the change under load and times its effects in r.
	run func(ctx context.Context, e *Env, r *Result) error
	// check adds the scenario's own expectations on the answers to r.
	check func(r *Result, answers []answer)
	// degradedExpected says answers without the rating are part of the
	// scenario rather than a lost rating.
	degradedExpected bool
}

// Scenarios returns the scenarios in the order they run. The last five are
// ways to get an answer that is not the truth, or a hang-up counted as a
// server's failure, rather than no answer: an entry that leads to another
// server than the instance it names, a Consul that freezes, and clients
// that go away.
func Scenarios() []Scenario {
	return []Scenario{
		{Name: "rolling-restart", Title: "SIGTERM and restart every metadata and rating instance, one at a time",
			setup: baseline, run: rollingRestart},
		{Name: "crash", Title: "SIGKILL one of two rating instances",
			setup: baseline, run: crash},
		{Name: "scale-up", Title: "start a third rating instance",
			setup: baseline, run: scaleUp},
		{Name: "consul-outage", Title: "stop Consul, start it again with empty state",
			setup: baseline, run: consulOutage},
		{Name: "dependency-down", Title: "stop every rating instance, then bring rating back",
			setup: baseline, run: dependencyDown, check: checkDependencyDown, degradedExpected: true},
		{Name: "slow-instance", Title: "one of two rating instances answers slowly, then recovers",
			setup: slowSetup, run: slowInstance},
		{Name: "slower-instance", Title: "one of two rating instances answers a little slower throughout (compare movie -balancer random and p2c)",
			setup: slowerSetup, run: slowerInstance, check: checkSlower},
		{Name: "address-reuse-rating", Title: "SIGKILL a rating instance; a metadata instance starts on its address within its TTL",
			setup: baseline, run: addressReuse("rating", "metadata")},
		{Name: "address-reuse-metadata", Title: "SIGKILL a metadata instance; a rating instance starts on its address within its TTL",
			setup: baseline, run: addressReuse("metadata", "rating")},
		{Name: "foreign-entry", Title: "check-less rating and metadata entries in Consul lead to a server that answers 404 to everything",
			setup: baseline, run: foreignEntry},
		{Name: "consul-freeze", Title: "stop Consul with SIGSTOP for longer than the TTL, then resume it",
			setup: baseline, run: consulFreeze},
		{Name: "client-hangup", Title: "besides the load, clients that hang up 1-5ms after sending, while movie waits on slowed instances",
			setup: hangUpSetup, run: clientHangup, check: checkHangUp},
	}
}

// Run runs the scenario under load and returns its result; an error means
// the environment could not be brought to the scenario's start, not that
// requests failed (the result's Problems say that).
func (s Scenario) Run(ctx context.Context, e *Env, seed uint64) (*Result, error) {
	fmt.Fprintf(e.cfg.Progress, "%s: %s\n", s.Name, s.Title)
	if err := s.setup(ctx, e); err != nil {
		return nil, fmt.Errorf("%s: setup: %w", s.Name, err)
	}
	before := e.counts.snapshot()
	r := &Result{Name: s.Name, Title: s.Title}
	l := startLoad(e.client, e.movie.Addr, e.cfg.Rate, seed)
	runErr := s.run(ctx, e, r)
	answers := l.finish()
	after := e.counts.snapshot()

	r.LoadAvg = loadAvg()
	r.tally(answers, s.degradedExpected)
	r.split(before, after)
	if s.check != nil {
		s.check(r, answers)
	}
	if runErr != nil {
		r.Problems = append(r.Problems, runErr.Error())
	}
	return r, nil
}

// hold keeps the load steady for d.
func hold(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// settle is how long the harness waits for a change that should take a
// few seconds at most; past it, the change is reported as not seen.
const settle = 30 * time.Second

// baseline brings back two plain metadata and two plain rating instances,
// and waits until movie's view is exactly those.
func baseline(ctx context.Context, e *Env) error {
	for _, service := range []string{"metadata", "rating"} {
		for _, in := range slices.Clone(e.instances[service]) {
			if in.proxy != nil {
				e.stopInstance(in)
			}
		}
		for len(e.instances[service]) > 2 {
			e.stopInstance(e.instances[service][len(e.instances[service])-1])
		}
		for len(e.instances[service]) < 2 {
			if _, err := e.startInstance(ctx, service, false); err != nil {
				return err
			}
		}
	}
	return e.settled(ctx)
}

// settled waits until every live instance passes in Consul and movie's view
// of each upstream is exactly the live instances.
func (e *Env) settled(ctx context.Context) error {
	if err := poll(ctx, settle, e.allPassing); err != nil {
		return fmt.Errorf("instances not all passing in Consul: %w", err)
	}
	for _, service := range []string{"metadata", "rating"} {
		want := e.addrs(service)
		if err := poll(ctx, settle, func() bool { return slices.Equal(e.movieView(service), want) }); err != nil {
			return fmt.Errorf("movie's view of %s is %v, want %v: %w", service, e.movieView(service), want, err)
		}
	}
	return nil
}

// addrs returns the sorted advertised addresses of service's live instances.
func (e *Env) addrs(service string) []string {
	var out []string
	for _, in := range e.instances[service] {
		out = append(out, in.advertised)
	}
	slices.Sort(out)
	return out
}

// movieView returns movie's last logged set of service's instances.
func (e *Env) movieView(service string) []string {
	e.movieLog.refresh()
	var view []string
	for _, r := range e.movieLog.recs {
		if r.Msg == "discovered instances changed" && r.Target == service {
			view = r.Instances
		}
	}
	view = slices.Clone(view)
	slices.Sort(view)
	return view
}

func rollingRestart(ctx context.Context, e *Env, r *Result) error {
	if err := hold(ctx, e.cfg.Hold); err != nil {
		return err
	}
	var dereg, seen, exit time.Duration
	for _, service := range []string{"metadata", "rating"} {
		for _, old := range slices.Clone(e.instances[service]) {
			sent := time.Now()
			if err := old.Signal(syscall.SIGTERM); err != nil {
				return err
			}
			at, err := e.movieSees(ctx, service, sent, settle, func(s []string) bool { return !contains(s, old.advertised) })
			if err != nil {
				return fmt.Errorf("movie never dropped %s after SIGTERM: %w", old.label, err)
			}
			dereg = max(dereg, at.Sub(sent))
			if _, err := old.Wait(20 * time.Second); err != nil {
				return err
			}
			exit = max(exit, time.Since(sent))
			e.stopInstance(old) // already exited: only forgets it
			in, err := e.startInstance(ctx, service, false)
			if err != nil {
				return err
			}
			at, err = e.movieSees(ctx, service, in.started, settle, func(s []string) bool { return contains(s, in.advertised) })
			if err != nil {
				return fmt.Errorf("movie never saw %s: %w", in.label, err)
			}
			seen = max(seen, at.Sub(in.started))
			e.progress("%s replaced by %s", old.label, in.label)
			// Let the new instance take its share before the next one goes.
			if err := hold(ctx, time.Second); err != nil {
				return err
			}
		}
	}
	r.effect("deregistration seen by movie (max)", dereg)
	r.effect("SIGTERM to exit (max, drain included)", exit)
	r.effect("start to in movie's view (max)", seen)
	return hold(ctx, e.cfg.Hold)
}

func crash(ctx context.Context, e *Env, r *Result) error {
	if err := hold(ctx, e.cfg.Hold); err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(e.cfg.Seed, 2))
	victim := e.instances["rating"][rng.IntN(len(e.instances["rating"]))]
	killed := time.Now()
	victim.Kill()
	e.forget(victim)
	e.progress("%s killed", victim.label)
	// Ejection needs failed attempts; a run with the breaker off never
	// ejects, so it is waited for only until Consul drops the instance.
	at, err := e.movieSees(ctx, "rating", killed, settle, func(s []string) bool { return !contains(s, victim.advertised) })
	if err != nil {
		return fmt.Errorf("movie never dropped the killed %s: %w", victim.label, err)
	}
	if rec, ok := e.movieLog.find(killed, func(r logRecord) bool {
		return r.Msg == "circuit breaker changed state" && r.Instance == victim.advertised && r.To == "open"
	}); ok {
		r.effect("ejected by movie's breaker", rec.Time.Sub(killed))
	} else {
		r.effect("ejected by movie's breaker", -1)
	}
	r.effect("dropped from Consul (TTL)", at.Sub(killed))
	return hold(ctx, e.cfg.Hold)
}

func scaleUp(ctx context.Context, e *Env, r *Result) error {
	if err := hold(ctx, e.cfg.Hold); err != nil {
		return err
	}
	in, err := e.startInstance(ctx, "rating", false)
	if err != nil {
		return err
	}
	r.effect("start to registered", time.Since(in.started))
	at, err := e.movieSees(ctx, "rating", in.started, settle, func(s []string) bool { return contains(s, in.advertised) })
	if err != nil {
		return fmt.Errorf("movie never saw %s: %w", in.label, err)
	}
	r.effect("start to in movie's view", at.Sub(in.started))
	if err := poll(ctx, settle, func() bool { return e.counts.snapshot()[in] > 0 }); err != nil {
		return fmt.Errorf("%s got no traffic: %w", in.label, err)
	}
	r.effect("start to first request served", time.Since(in.started))
	return hold(ctx, e.cfg.Hold)
}

func consulOutage(ctx context.Context, e *Env, r *Result) error {
	if err := hold(ctx, e.cfg.Hold); err != nil {
		return err
	}
	e.agent.Stop()
	// Whatever goes wrong below, the next scenario needs Consul back.
	defer func() { _ = e.agent.Resume(context.WithoutCancel(ctx)) }()
	e.progress("Consul stopped for %s", e.cfg.Outage)
	if err := hold(ctx, e.cfg.Outage/2); err != nil {
		return err
	}
	// Churn while Consul is away: one rating instance is replaced. The old
	// one cannot deregister, so movie keeps calling it until retries and
	// its breaker take over; the new one registers only once Consul is
	// back, and movie's view must catch up with both changes.
	rep, err := replaceRating(ctx, e)
	if err != nil {
		return err
	}
	defer rep.abandon(ctx, e)
	if err := hold(ctx, e.cfg.Outage-e.cfg.Outage/2); err != nil {
		return err
	}
	resumed := time.Now()
	if err := e.agent.Resume(ctx); err != nil {
		return fmt.Errorf("restart consul: %w", err)
	}
	up := time.Now()
	e.progress("Consul back, empty")
	r.effect("Consul start to leader", up.Sub(resumed))
	in, err := rep.complete(e)
	if err != nil {
		return err
	}
	if err := poll(ctx, settle, e.allPassing); err != nil {
		return fmt.Errorf("instances did not all re-register: %w", err)
	}
	r.effect("leader to every instance re-registered", time.Since(up))
	movieCatchesUp(ctx, e, r, up, rep.old, in)
	if err := e.settled(ctx); err != nil {
		return err
	}
	return hold(ctx, e.cfg.Hold)
}

// ratingReplacement is a rating instance replaced while Consul is down.
type ratingReplacement struct {
	old     *instance
	started chan launched // the new instance, once it has registered
	adopted bool          // the new instance is in the Env's live instances
}

// launched is what Env.launch returned.
type launched struct {
	in  *instance
	err error
}

// replaceRating sends SIGTERM to the first rating instance and launches its
// replacement, which can register only once Consul is back.
func replaceRating(ctx context.Context, e *Env) (*ratingReplacement, error) {
	old := e.instances["rating"][0]
	if err := old.Signal(syscall.SIGTERM); err != nil {
		return nil, err
	}
	rep := &ratingReplacement{old: old, started: make(chan launched, 1)}
	go func() {
		in, err := e.launch(ctx, "rating", false)
		rep.started <- launched{in, err}
	}()
	return rep, nil
}

// complete waits for the old instance to exit and the new one to register,
// and puts the new one in the old one's place among e's live instances.
func (rep *ratingReplacement) complete(e *Env) (*instance, error) {
	if _, err := rep.old.Wait(20 * time.Second); err != nil {
		return nil, err
	}
	e.forget(rep.old)
	s := <-rep.started
	rep.adopted = true
	if s.err != nil {
		return nil, fmt.Errorf("replacement rating instance: %w", s.err)
	}
	e.adopt(s.in)
	return s.in, nil
}

// abandon stops the new instance if complete never took it, after an early
// return, rather than leak it.
func (rep *ratingReplacement) abandon(ctx context.Context, e *Env) {
	if rep.adopted {
		return
	}
	_ = e.agent.Resume(context.WithoutCancel(ctx)) // it registers before it can stop
	if s := <-rep.started; s.err == nil {
		s.in.stop()
	}
}

// movieCatchesUp times, from Consul's leader being up, movie's view taking
// in the new rating instance, its first request served and the old one
// leaving movie's view; a change not seen in time is reported as such.
func movieCatchesUp(ctx context.Context, e *Env, r *Result, up time.Time, old, in *instance) {
	at, err := e.movieSees(ctx, "rating", up, settle, func(v []string) bool { return contains(v, in.advertised) })
	if err != nil {
		r.effect("leader to new instance in movie's view", -1)
	} else {
		r.effect("leader to new instance in movie's view", at.Sub(up))
	}
	if err := poll(ctx, 2*settle, func() bool { return e.counts.snapshot()[in] > 0 }); err != nil {
		r.effect("leader to new instance's first request served", -1)
	} else {
		r.effect("leader to new instance's first request served", time.Since(up))
	}
	at, err = e.movieSees(ctx, "rating", up, settle, func(v []string) bool { return !contains(v, old.advertised) })
	if err != nil {
		r.effect("leader to stopped instance out of movie's view", -1)
	} else {
		r.effect("leader to stopped instance out of movie's view", at.Sub(up))
	}
}

func dependencyDown(ctx context.Context, e *Env, r *Result) error {
	if err := hold(ctx, e.cfg.Hold); err != nil {
		return err
	}
	ratings := slices.Clone(e.instances["rating"])
	stopped := time.Now()
	for _, in := range ratings {
		if err := in.Signal(syscall.SIGTERM); err != nil {
			return err
		}
	}
	at, err := e.movieSees(ctx, "rating", stopped, settle, func(s []string) bool { return len(s) == 0 })
	if err != nil {
		return fmt.Errorf("movie never saw rating gone: %w", err)
	}
	r.effect("SIGTERM to no rating in movie's view", at.Sub(stopped))
	// Every request due from now on finds no rating instance in movie's
	// view, so it must come back degraded.
	r.downFrom = time.Now()
	for _, in := range ratings {
		if _, err := in.Wait(20 * time.Second); err != nil {
			return err
		}
		e.forget(in)
	}
	e.progress("every rating instance stopped")
	if err := hold(ctx, e.cfg.Hold); err != nil {
		return err
	}
	r.downUntil = time.Now()
	for range 2 {
		if _, err := e.startInstance(ctx, "rating", false); err != nil {
			return err
		}
	}
	// The first full answer, from the harness's own probe, marks when movie
	// has rating back: every request due after it must be full.
	err = poll(ctx, settle, func() bool {
		a := fetch(ctx, e.client, "http://"+e.movie.Addr+"/movie?id=", "1")
		return a.outcome == Full
	})
	if err != nil {
		return fmt.Errorf("no full answer after rating came back: %w", err)
	}
	r.fullFrom = time.Now()
	r.effect("rating start to full answers", r.fullFrom.Sub(r.downUntil))
	return hold(ctx, e.cfg.Hold)
}

// checkDependencyDown expects every answer due while rating was down to be
// degraded, there to be some, and every answer due after full answers
// resumed to be full.
func checkDependencyDown(r *Result, answers []answer) {
	var down, downDegraded, lateDegraded int
	for _, a := range answers {
		switch {
		case r.downFrom.IsZero() || r.fullFrom.IsZero():
		case !a.due.Before(r.downFrom) && a.due.Before(r.downUntil):
			down++
			if a.outcome == Degraded {
				downDegraded++
			}
		case a.due.After(r.fullFrom) && a.outcome == Degraded:
			lateDegraded++
		}
	}
	r.Expected = down
	r.DegradedLatency = summarize(answers, func(a answer) bool { return a.outcome == Degraded })
	switch {
	case down == 0:
		r.Problems = append(r.Problems, "no request was sent while rating was down")
	case downDegraded != down:
		r.Problems = append(r.Problems, fmt.Sprintf("%d of %d answers while rating was down were not degraded", down-downDegraded, down))
	}
	if lateDegraded > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d answers without the rating after full answers resumed", lateDegraded))
	}
}

// slowSetup leaves one plain rating instance and one reached through a
// slowProxy, with no delay yet.
func slowSetup(ctx context.Context, e *Env) error {
	if err := baseline(ctx, e); err != nil {
		return err
	}
	if err := e.slowOne(ctx, "rating"); err != nil {
		return err
	}
	return e.settled(ctx)
}

// slowOne replaces the first instance of service with one reached through
// a slowProxy, with no delay yet.
func (e *Env) slowOne(ctx context.Context, service string) error {
	if _, err := e.startInstance(ctx, service, true); err != nil {
		return err
	}
	e.stopInstance(e.instances[service][0])
	return nil
}

// slowerSetup leaves one plain rating instance and one that answers
// SlowerDelay later, from before the load starts.
func slowerSetup(ctx context.Context, e *Env) error {
	if err := slowSetup(ctx, e); err != nil {
		return err
	}
	slow := e.proxied("rating")
	slow.proxy.setDelay(e.cfg.SlowerDelay)
	e.progress("%s now holds every answer %s", slow.label, e.cfg.SlowerDelay)
	return nil
}

// slowerInstance holds the load on the two instances, one slower, for two
// holds; the next scenario's setup replaces the slower one.
func slowerInstance(ctx context.Context, e *Env, r *Result) error {
	defer e.proxied("rating").proxy.setDelay(0)
	return hold(ctx, 2*e.cfg.Hold)
}

// checkSlower works out the slower instance's share of the rating
// requests, for the report and for comparing balancers.
func checkSlower(r *Result, _ []answer) {
	var slow, all int
	for _, s := range r.Split {
		if !strings.HasPrefix(s.Instance, "rating") {
			continue
		}
		all += s.Served
		if strings.HasSuffix(s.Instance, "(slow)") {
			slow += s.Served
		}
	}
	if all == 0 || slow == all {
		r.Problems = append(r.Problems, fmt.Sprintf("the rating instances served %d requests, the slower one %d: no share to compare", all, slow))
		return
	}
	r.SlowShare = float64(slow) / float64(all)
	r.Notes = append(r.Notes, fmt.Sprintf("the slower rating instance served %.1f%% of the rating requests", 100*r.SlowShare))
}

// proxied returns the instance of service reached through a slowProxy, or
// nil.
func (e *Env) proxied(service string) *instance {
	for _, in := range e.instances[service] {
		if in.proxy != nil {
			return in
		}
	}
	return nil
}

func slowInstance(ctx context.Context, e *Env, r *Result) error {
	slow := e.proxied("rating")
	if err := hold(ctx, e.cfg.Hold); err != nil {
		return err
	}
	slowed := time.Now()
	slow.proxy.setDelay(e.cfg.SlowDelay)
	defer slow.proxy.setDelay(0)
	e.progress("%s now holds every answer %s", slow.label, e.cfg.SlowDelay)
	// Slow long enough for at least one trial call after the breaker's
	// cooldown.
	if err := hold(ctx, max(2*e.cfg.Hold, 5*time.Second)); err != nil {
		return err
	}
	if rec, ok := e.movieLog.find(slowed, func(r logRecord) bool {
		return r.Msg == "circuit breaker changed state" && r.Instance == slow.advertised && r.To == "open"
	}); ok {
		r.effect("ejected by movie's breaker", rec.Time.Sub(slowed))
	} else {
		r.effect("ejected by movie's breaker", -1)
	}
	healed := time.Now()
	slow.proxy.setDelay(0)
	e.progress("%s fast again", slow.label)
	if err := hold(ctx, e.cfg.Hold); err != nil {
		return err
	}
	if rec, ok := e.movieLog.find(healed, func(r logRecord) bool {
		return r.Msg == "circuit breaker changed state" && r.Instance == slow.advertised && r.To == "closed"
	}); ok {
		r.effect("back in use after recovery", rec.Time.Sub(healed))
	}
	return nil
}
