package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/go-kit/kit/sd"
	consul "github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"

	"movieexample.com/pkg/backoff"
	"movieexample.com/pkg/identity"
	"movieexample.com/pkg/routing"
)

// Discovery timings. They are constants rather than Config fields because
// they follow from Consul's behaviour, not from a deployment's taste.
const (
	// queryWait bounds one blocking query. Consul's default is five
	// minutes; a shorter wait, with a client deadline a little past it,
	// also finds a connection that died without a reset (a vanished
	// host) within about a minute.
	queryWait = time.Minute
	// minQueryBackoff and maxQueryBackoff bound the pause after a failed
	// query. go-kit's Instancer doubles its pause up to a minute, so after
	// a 30s Consul outage it could stay blind for another half minute
	// while instances come and go; a one-second cap costs an unreachable
	// local agent one query per second per upstream.
	minQueryBackoff = 50 * time.Millisecond
	maxQueryBackoff = time.Second
	// DefaultGrace is the default grace of NewInstancer: one default TTL,
	// since an instance that has not re-registered by then would have
	// turned critical anyway.
	DefaultGrace = 5 * time.Second
	// firstQueryTimeout bounds the query made before the instancer is
	// returned, so a hung agent cannot hold up movie's start.
	firstQueryTimeout = 5 * time.Second
	// MaxStale bounds how stale an answer may be and still remove
	// instances. Queries are stale reads, which any server answers (see
	// Instancer); Consul's servers are usually within 50ms of the leader. A
	// server that has not heard from a leader for longer than one default
	// TTL may have missed instances leaving and instances arriving alike: its
	// answer may add instances but not remove them.
	MaxStale = 5 * time.Second
)

// Instancer is an sd.Instancer over the passing instances of one service in
// Consul, watched with blocking queries. Each instance string names the
// instance as well as its address (identity.Instance: "rating/rating-<uuid>@
// 10.0.0.7:8082"), because an address only says where an instance was: the
// caller checks that the process answering there is the one named.
//
// It lists only the entries that Consul.Register makes, with a TTL check of
// the instance's own and its identity in the metadata. An entry registered
// by hand (consul services register, the catalog API) has no check, so
// Consul calls it passing for as long as it stays, whatever runs at its
// address, and it names no instance to check an answer against. Each such
// entry is logged once and counted in movieapp_discovery_ignored_entries.
//
// It replaces go-kit's sd/consul Instancer, which loses requests when Consul
// itself falters:
//
//   - A Consul dev agent (or a cluster whose data was lost) comes back empty.
//     The first answer after it returns lists no instance, because the
//     instances re-register only at their next heartbeat (a third of the TTL
//     later). go-kit publishes that empty set and every call fails until
//     they do. Here, for the grace given to NewInstancer after Consul answers
//     again, an answer may add instances but not remove them: the last known
//     ones, which kept serving all along, stay in use while they re-register.
//   - A Consul that was paused (SIGSTOP, a stalled VM) fires its overdue TTL
//     timers when it resumes, before it reads the heartbeats queued
//     meanwhile: for a moment every instance is critical, and go-kit, which
//     asks for passing instances only, publishes the empty set. Here Consul
//     is asked for every entry, so an answer in which no instance passes but
//     the last published ones are still registered is told from one in which
//     they are gone. Those instances stay in use for the grace, each until it
//     passes again or leaves Consul, and the ones still critical then are
//     dropped. Instances whose entries are gone (deregistered at shutdown)
//     or put in maintenance are dropped at once, as is one that turns
//     critical while another still passes: a service that is shut down still
//     fails its callers fast. The price: when every instance of a service
//     crashes at once, which a Consul pause looks exactly like from here,
//     they stay in use one grace longer, where their breakers skip them.
//   - go-kit reads with the default consistency, which only the leader
//     answers: during a leader election every query fails. Here queries
//     are stale reads, which any server answers; an answer from a server
//     that has not heard from a leader for over MaxStale may add instances
//     but not remove them, and the watch logs while it reads such answers.
//   - go-kit backs off up to a minute between failed queries; here the
//     pause is capped at maxQueryBackoff, so the view catches up within a
//     second of Consul's return.
//   - After a failure the next query starts from index 0 instead of the
//     last index: a restarted agent's indexes start again from low
//     numbers, and a blocking query on an index it has not reached would
//     wait its full wait time before answering.
//
// While Consul cannot be reached, the last known instances stay in use
// (the Endpointer keeps them on an error event), and the per-instance
// circuit breakers and retries deal with any that died meanwhile.
type Instancer struct {
	health  *consul.Health
	service string
	grace   time.Duration
	log     *slog.Logger
	ignored prometheus.Gauge
	holds   prometheus.Counter

	// logged holds the entries ignored in the last answer, so that each is
	// logged once. Only the watch uses it, and it forgets an entry once
	// Consul no longer lists it.
	logged map[string]bool

	mu    sync.Mutex
	state sd.Event // last published, an error included
	known []string // last published instances, kept through errors
	subs  map[chan<- sd.Event]struct{}

	cancel context.CancelFunc
	done   chan struct{}
}

// NewInstancer returns the Instancer of service's passing instances. It
// makes one query (bounded by firstQueryTimeout) so that the instancer holds
// the current instances when it is returned, then watches for changes until
// ctx ends or Stop is called. For grace after Consul comes back from an
// outage or a restart, the instances it lists are added to the last known
// ones rather than replacing them, and for grace after every instance turned
// critical at once they stay listed (see Instancer); 0 trusts every answer
// of Consul's. Its metrics go to m, labelled with service as the target.
func NewInstancer(ctx context.Context, client *consul.Client, service string, grace time.Duration, logger *slog.Logger, m *Metrics) *Instancer {
	ctx, cancel := context.WithCancel(ctx)
	w := &Instancer{
		health:  client.Health(),
		service: service,
		grace:   grace,
		log:     logger.With("target", service),
		ignored: m.ignoredEntries.WithLabelValues(service),
		holds:   m.holds.WithLabelValues(service),
		subs:    map[chan<- sd.Event]struct{}{},
		cancel:  cancel,
		done:    make(chan struct{}),
	}
	qctx, qcancel := context.WithTimeout(ctx, firstQueryTimeout)
	a, index, err := w.query(qctx, 0, 0)
	qcancel()
	if err != nil {
		w.log.Warn("service discovery failing; will keep trying", "err", err)
		w.state = sd.Event{Err: err}
	} else {
		w.state = sd.Event{Instances: a.passing}
		w.known = a.passing
	}
	go w.loop(ctx, index, err != nil)
	return w
}

func (w *Instancer) loop(ctx context.Context, index uint64, failing bool) {
	defer close(w.done)
	var (
		delay        = minQueryBackoff
		failedAt     = time.Now()
		recoverUntil time.Time // until then, answers only add instances
		h            holding   // instances kept while critical (see hold)
		stale        bool      // the last answer was older than MaxStale
	)
	for {
		a, next, err := w.query(ctx, index, waitTime(recoverUntil, h.until))
		if old := a.lastContact > MaxStale; err == nil && old != stale {
			stale = old
			if stale {
				w.log.Warn("service discovery reading stale data: Consul's servers have lost their leader; answers may add instances but not remove them",
					"last_contact", a.lastContact.Round(time.Millisecond).String(), "known_leader", a.knownLeader)
			} else {
				w.log.Info("service discovery reading fresh data again", "last_contact", a.lastContact.Round(time.Millisecond).String())
			}
		}
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			// The recovery grace that follows covers what a hold would.
			h = holding{}
			if !failing {
				failing, failedAt = true, time.Now()
				w.log.Warn("service discovery failing; keeping the last known instances", "err", err)
				w.publish(sd.Event{Err: err})
			}
			index = 0
			if backoff.Sleep(ctx, backoff.Jitter(delay)) != nil {
				return
			}
			delay = min(2*delay, maxQueryBackoff)
			continue
		case next < index:
			// Consul's index went backwards: the agent lost its state
			// between two queries without us seeing it down.
			w.log.Warn("Consul index went backwards; treating it as a restarted agent", "index", next, "previous", index)
			index, recoverUntil, h = 0, time.Now().Add(w.grace), holding{}
			continue
		}
		delay = minQueryBackoff
		if failing {
			failing = false
			recoverUntil = time.Now().Add(w.grace)
			w.log.Info("service discovery recovered", "down_for", time.Since(failedAt).Round(time.Millisecond).String(), "instances", a.passing)
		}
		index = max(next, 1) // 0 would turn the next query into a non-blocking one
		if !recoverUntil.IsZero() && !time.Now().Before(recoverUntil) {
			recoverUntil = time.Time{}
		}
		var instances []string
		switch {
		case stale:
			instances, h = w.withLastKnown(a.passing), holding{}
		case recoverUntil.IsZero():
			instances, h = w.hold(a, h)
		default:
			instances = w.withLastKnown(a.passing)
		}
		w.publish(sd.Event{Instances: instances})
	}
}

// waitTime returns how long the next blocking query may wait: queryWait, or
// less so that the watch wakes up when the first of the deadlines that are
// set passes, even if Consul has nothing new to say by then.
func waitTime(deadlines ...time.Time) time.Duration {
	wait := queryWait
	for _, d := range deadlines {
		if !d.IsZero() {
			wait = min(wait, max(time.Until(d), 10*time.Millisecond))
		}
	}
	return wait
}

// answer is what one query found among the entries that are movieapp
// instances: the instance strings of those that pass, and of those that do
// not (critical or warning; not those in maintenance), each sorted.
type answer struct {
	passing, critical []string
	// lastContact is how long ago the server that answered last heard
	// from the leader (0 from the leader itself); knownLeader whether it
	// knows one.
	lastContact time.Duration
	knownLeader bool
}

// query returns the instances of the service and Consul's index, waiting
// up to wait for a change past index (no wait if index is 0).
func (w *Instancer) query(ctx context.Context, index uint64, wait time.Duration) (answer, uint64, error) {
	// Consul adds up to wait/16 of jitter to the wait; past that and a few
	// seconds more, the connection is dead, not waiting.
	ctx, cancel := context.WithTimeout(ctx, wait+wait/16+5*time.Second)
	defer cancel()
	// A stale read: any server answers it, from its own copy of the state,
	// so the watch goes on through a leader election (a read that needs the
	// leader fails until there is a new one) and the reads of every gateway
	// spread over the servers instead of all landing on the leader. How
	// stale the copy is comes back in LastContact, bounded by MaxStale.
	q := (&consul.QueryOptions{WaitIndex: index, WaitTime: wait, AllowStale: true}).WithContext(ctx)
	// Every entry, not only the passing ones: that is what tells instances
	// that all turned critical from instances that are gone (see hold).
	entries, meta, err := w.health.Service(w.service, "", false, q)
	if err != nil {
		return answer{}, 0, fmt.Errorf("watch %s instances: %w", w.service, permissionError(err))
	}
	if len(entries) == 0 && meta.ResultsFilteredByACLs {
		// Consul answers a token lacking service:read or node:read with a
		// 200 and every entry filtered out, not with a 403.
		return answer{}, 0, fmt.Errorf("watch %s instances: %w: Consul hid every %s instance from this token, which needs service:read on %q and node:read",
			w.service, ErrPermissionDenied, w.service, w.service)
	}
	a := w.sortOut(entries)
	a.lastContact, a.knownLeader = meta.LastContact, meta.KnownLeader
	return a, meta.LastIndex, nil
}

// sortOut returns the answer of entries. It leaves out the entries that are
// not movieapp instances, and logs each of them the first time it sees it.
func (w *Instancer) sortOut(entries []*consul.ServiceEntry) answer {
	a := answer{passing: []string{}, critical: []string{}}
	ignored := map[string]bool{}
	for _, e := range entries {
		if reason := notAnInstance(e); reason != "" {
			key := e.Node.Node + "/" + e.Service.ID // an ID is unique on its node only
			ignored[key] = true
			if !w.logged[key] {
				w.log.Warn("ignoring a Consul entry that is not a movieapp instance",
					"id", e.Service.ID, "addr", entryAddr(e), "node", e.Node.Node, "reason", reason)
			}
			continue
		}
		// Its weight and tags go with it, for the balancer (routing.With).
		inst := routing.With(identity.Instance(identity.Of(e.Service.Service, e.Service.ID), entryAddr(e)),
			routing.Attrs{Weight: e.Service.Weights.Passing, Tags: e.Service.Tags})
		// AggregatedStatus is what Consul's passing-only query filters on.
		// An instance (or node) put in maintenance was taken out on purpose:
		// it is no instance to hold.
		switch e.Checks.AggregatedStatus() {
		case consul.HealthPassing:
			a.passing = append(a.passing, inst)
		case consul.HealthMaint:
		default:
			a.critical = append(a.critical, inst)
		}
	}
	w.logged = ignored
	w.ignored.Set(float64(len(ignored)))
	slices.Sort(a.passing)
	slices.Sort(a.critical)
	return a
}

// notAnInstance returns why e is not an entry that Consul.Register made,
// in words for the log, or "" if it is one.
func notAnInstance(e *consul.ServiceEntry) string {
	id := e.Service.ID
	i := slices.IndexFunc(e.Checks, func(c *consul.HealthCheck) bool {
		return c.CheckID == checkID(id) && c.ServiceID == id
	})
	want := identity.Of(e.Service.Service, id)
	got, ok := e.Service.Meta[identity.MetaKey]
	switch {
	case i < 0:
		return fmt.Sprintf("it has no health check %q of its own (registered by hand or through the catalog API?), so nothing tells whether anything runs at its address", checkID(id))
	case e.Checks[i].Type != "ttl":
		return fmt.Sprintf("its health check %q is of type %q, not the TTL check that a movieapp instance keeps passing", checkID(id), e.Checks[i].Type)
	case !ok:
		return fmt.Sprintf("its metadata has no %s, so it names no instance to check an answer against", identity.MetaKey)
	case got != want:
		return fmt.Sprintf("its metadata names the instance %q, not %q", got, want)
	}
	return ""
}

// holding is a hold the watch is in: the instances kept in use while
// Consul lists them as critical, until a deadline. The zero value is no
// hold.
type holding struct {
	instances []string // sorted
	until     time.Time
}

// hold returns the instances to publish for a, and the hold a leaves the
// watch in; h is the hold before a.
//
// A hold starts when no instance passes while some of the last published
// ones are still listed (critical, not deregistered): in case Consul alone
// is at fault (see Instancer), those stay in use for the grace. During the
// hold each held instance stays until it passes again (it is then in a's
// passing ones anyway) or leaves Consul; when the grace ends, the ones still
// critical are dropped. Without a hold, a is published as it is.
func (w *Instancer) hold(a answer, h holding) ([]string, holding) {
	if h.until.IsZero() {
		if len(a.passing) > 0 || w.grace <= 0 {
			return a.passing, holding{}
		}
		held := intersect(w.lastKnown(), a.critical)
		if len(held) == 0 {
			return a.passing, holding{}
		}
		w.holds.Inc()
		w.log.Warn("every instance turned critical at once; keeping them for the grace to confirm", "grace", w.grace.String(), "instances", held)
		return held, holding{instances: held, until: time.Now().Add(w.grace)}
	}
	kept := intersect(h.instances, a.critical)
	switch {
	case len(kept) == 0:
		w.log.Info("not confirmed: the instances held are passing again or gone from Consul", "instances", a.passing)
		return a.passing, holding{}
	case !time.Now().Before(h.until):
		w.log.Warn("instances still critical after the grace: confirmed; dropping them", "grace", w.grace.String(), "instances", kept)
		return a.passing, holding{}
	}
	merged := slices.Concat(a.passing, kept)
	slices.Sort(merged)
	return merged, holding{instances: kept, until: h.until}
}

// lastKnown returns the last published instances.
func (w *Instancer) lastKnown() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.known)
}

// intersect returns the instances of a that are also in b: the same
// instance, whatever weight and tags each string carries (routing.With).
func intersect(a, b []string) []string {
	in := bareSet(b)
	return slices.DeleteFunc(slices.Clone(a), func(inst string) bool { return !in[bare(inst)] })
}

// withLastKnown returns instances plus the last published ones, each
// instance once: one that re-registered with another weight or tags is in
// instances with its new ones, and only those.
func (w *Instancer) withLastKnown(instances []string) []string {
	w.mu.Lock()
	known := slices.Clone(w.known)
	w.mu.Unlock()
	in := bareSet(instances)
	known = slices.DeleteFunc(known, func(inst string) bool { return in[bare(inst)] })
	merged := slices.Concat(instances, known)
	slices.Sort(merged)
	return slices.Compact(merged)
}

func bareSet(instances []string) map[string]bool {
	set := make(map[string]bool, len(instances))
	for _, inst := range instances {
		set[bare(inst)] = true
	}
	return set
}

// bare is an instance string without its weight and tags.
func bare(inst string) string {
	b, _ := routing.Split(inst)
	return b
}

// publish sends ev to every subscriber unless it repeats the last event.
// Sending under the lock, as go-kit's own instancers do, keeps subscribers
// from seeing events out of order; subscribers must keep receiving until
// they deregister.
func (w *Instancer) publish(ev sd.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if reflect.DeepEqual(w.state, ev) {
		return
	}
	w.state = ev
	if ev.Err == nil {
		w.known = ev.Instances
	}
	for ch := range w.subs {
		ch <- copyEvent(ev)
	}
}

// Register implements sd.Instancer: ch receives the current state at once,
// then every change.
func (w *Instancer) Register(ch chan<- sd.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.subs[ch] = struct{}{}
	ch <- copyEvent(w.state)
}

// Deregister implements sd.Instancer.
func (w *Instancer) Deregister(ch chan<- sd.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.subs, ch)
}

// Stop implements sd.Instancer: it ends the watch, the query in flight
// included, and waits for it.
func (w *Instancer) Stop() {
	w.cancel()
	<-w.done
}

// copyEvent gives each subscriber its own slice: go-kit's endpoint cache
// sorts the one it receives.
func copyEvent(ev sd.Event) sd.Event {
	ev.Instances = slices.Clone(ev.Instances)
	return ev
}
