package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"
	consul "github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"

	"movieexample.com/internal/devconsul"
	"movieexample.com/internal/metricstest"
	"movieexample.com/pkg/identity"
	"movieexample.com/pkg/routing"
)

// events collects what an instancer publishes, draining its channel as a
// subscriber must.
type events struct {
	ch   chan sd.Event
	mu   sync.Mutex
	seen []sd.Event
	done chan struct{}
}

func subscribe(t *testing.T, in sd.Instancer) *events {
	t.Helper()
	e := &events{ch: make(chan sd.Event), done: make(chan struct{})}
	go func() {
		defer close(e.done)
		for ev := range e.ch {
			e.mu.Lock()
			e.seen = append(e.seen, ev)
			e.mu.Unlock()
		}
	}()
	in.Register(e.ch)
	t.Cleanup(func() {
		in.Deregister(e.ch)
		close(e.ch)
		<-e.done
	})
	return e
}

func (e *events) all() []sd.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.seen)
}

// last returns the last published set of instances.
func (e *events) last() []string {
	evs := e.all()
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Err == nil {
			return evs[i].Instances
		}
	}
	return nil
}

// logRecords keeps what a logger wrote.
type logRecords struct {
	mu   sync.Mutex
	recs []logRecord
}

type logRecord struct {
	level slog.Level
	msg   string
	attrs map[string]string // the logger's own (such as the target) included
}

func (l *logRecords) logger() *slog.Logger { return slog.New(recordHandler{logs: l}) }

// find returns the records of msg.
func (l *logRecords) find(msg string) []logRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	var found []logRecord
	for _, r := range l.recs {
		if r.msg == msg {
			found = append(found, r)
		}
	}
	return found
}

func (l *logRecords) has(msg string) bool { return len(l.find(msg)) > 0 }

func (l *logRecords) all() []logRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.recs)
}

type recordHandler struct {
	logs  *logRecords
	attrs []slog.Attr
}

func (h recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	rec := logRecord{level: r.Level, msg: r.Message, attrs: map[string]string{}}
	for _, a := range h.attrs {
		rec.attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.String()
		return true
	})
	h.logs.mu.Lock()
	defer h.logs.mu.Unlock()
	h.logs.recs = append(h.logs.recs, rec)
	return nil
}
func (h recordHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return recordHandler{logs: h.logs, attrs: append(slices.Clip(h.attrs), as...)}
}
func (h recordHandler) WithGroup(string) slog.Handler { return h }

func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// register registers a rating instance as a movieapp instance does, with a
// TTL long enough that it turns critical only when a test says so, and
// returns its instance string.
func register(t *testing.T, c *consul.Client, id string, port int) string {
	t.Helper()
	inst := Instance{ID: id, Service: "rating", Host: "127.0.0.1", Port: port}
	if err := NewConsul(c).Register(context.Background(), inst, time.Minute, time.Minute); err != nil {
		t.Fatal(err)
	}
	return identity.Instance(identity.Of("rating", id), inst.Addr())
}

// watched is an Instancer of rating and what it published, logged and
// counted.
type watched struct {
	*events
	logs    *logRecords
	metrics *prometheus.Registry
}

func watchRating(t *testing.T, c *consul.Client, grace time.Duration) watched {
	t.Helper()
	w := watched{logs: &logRecords{}, metrics: prometheus.NewRegistry()}
	ctx, cancel := context.WithCancel(context.Background())
	in := NewInstancer(ctx, c, "rating", grace, w.logs.logger(), NewMetrics(w.metrics))
	t.Cleanup(func() {
		cancel()
		in.Stop()
	})
	w.events = subscribe(t, in)
	return w
}

// metric returns the value of the series of name for the rating target.
func (w watched) metric(t *testing.T, name string) float64 {
	t.Helper()
	v, ok := metricstest.Gather(t, w.metrics).Value(name, map[string]string{"target": "rating"})
	if !ok {
		t.Fatalf("no series %s{target=rating}", name)
	}
	return v
}

// sawEmpty reports whether an empty set of instances was published.
func (e *events) sawEmpty() bool {
	return slices.ContainsFunc(e.all(), func(ev sd.Event) bool { return ev.Err == nil && len(ev.Instances) == 0 })
}

// TestInstancerAfterConsulLosesItsState restarts a real Consul agent
// with empty state under a watching instancer, and re-registers one of two
// instances only once the instancer has seen Consul answer again with none:
// the moment go-kit's Instancer would publish an empty set and fail every
// call until the instances' next heartbeat.
func TestInstancerAfterConsulLosesItsState(t *testing.T) {
	for _, tc := range []struct {
		name      string
		grace     time.Duration
		wantEmpty bool
	}{
		{"with a grace the last known instances stay until they re-register", 2 * time.Second, false},
		{"without one Consul's empty answer is published", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			agent := devconsul.New(t)
			client, err := agent.Client("")
			if err != nil {
				t.Fatal(err)
			}
			a := register(t, client, "rating-a", 1001)
			b := register(t, client, "rating-b", 1002)
			// The agent syncs a registration to the catalog, which health
			// queries read, on its own schedule: wait for it, so that the
			// instancer's first answer already has both and an empty set
			// can only come from the restart.
			waitUntil(t, 10*time.Second, "both instances in the catalog", func() bool {
				entries, _, err := client.Health().Service("rating", "", true, nil)
				return err == nil && len(entries) == 2
			})

			logs := &logRecords{}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			in := NewInstancer(ctx, client, "rating", tc.grace, logs.logger(), NewMetrics(prometheus.NewRegistry()))
			defer in.Stop()
			evs := subscribe(t, in)
			both := []string{a, b}
			// The subscriber records events on a goroutine of its own.
			waitUntil(t, 5*time.Second, "first instances "+fmt.Sprint(both), func() bool { return slices.Equal(evs.last(), both) })

			agent.Stop()
			waitUntil(t, 10*time.Second, "instancer sees Consul gone", func() bool { return logs.has("service discovery failing; keeping the last known instances") })
			if err := agent.Resume(context.Background()); err != nil {
				t.Fatal(err)
			}
			waitUntil(t, 30*time.Second, "instancer sees Consul back", func() bool { return logs.has("service discovery recovered") })
			register(t, client, "rating-a", 1001) // b never comes back

			one := []string{a}
			waitUntil(t, 30*time.Second, "b dropped", func() bool { return slices.Equal(evs.last(), one) })
			if sawEmpty := evs.sawEmpty(); sawEmpty != tc.wantEmpty {
				t.Errorf("an empty set was published: %v, want %v; events: %+v", sawEmpty, tc.wantEmpty, evs.all())
			}
		})
	}
}

// TestInstancerListsOnlyMovieappInstances registers, next to one instance
// as Consul.Register does, entries that a movieapp instance did not make,
// and checks that the Instancer lists the one, logs each other once however
// many answers list it, counts them, and forgets those that leave Consul.
func TestInstancerListsOnlyMovieappInstances(t *testing.T) {
	agent := devconsul.New(t)
	client, err := agent.Client("")
	if err != nil {
		t.Fatal(err)
	}
	ttlCheck := func(id string) *consul.AgentServiceCheck {
		return &consul.AgentServiceCheck{CheckID: checkID(id), TTL: "1m", Status: consul.HealthPassing}
	}
	meta := func(id string) map[string]string {
		return map[string]string{identity.MetaKey: identity.Of("rating", id)}
	}
	byHand := func(svc *consul.AgentServiceRegistration) error { return client.Agent().ServiceRegister(svc) }
	// A node of its own: the agent's anti-entropy would delete from its own
	// node the entries it did not register itself.
	byCatalog := func(svc *consul.AgentService, check *consul.AgentCheck) error {
		_, err := client.Catalog().Register(&consul.CatalogRegistration{Node: "by-hand", Address: "127.0.0.1", Service: svc, Check: check}, nil)
		return err
	}
	others := []struct {
		name, id   string
		catalog    bool // registered through the catalog API, not the agent
		register   func(id string) error
		wantReason string // a part of the reason logged
	}{
		{"no check, as consul services register makes it", "rating-nocheck", false, func(id string) error {
			return byHand(&consul.AgentServiceRegistration{ID: id, Name: "rating", Address: "127.0.0.1", Port: 2001, Meta: meta(id)})
		}, "no health check"},
		{"no check, through the catalog API", "rating-catalog", true, func(id string) error {
			return byCatalog(&consul.AgentService{ID: id, Service: "rating", Port: 2002, Meta: meta(id)}, nil)
		}, "no health check"},
		{"a check of another type", "rating-http", true, func(id string) error {
			return byCatalog(&consul.AgentService{ID: id, Service: "rating", Port: 2003, Meta: meta(id)},
				&consul.AgentCheck{CheckID: checkID(id), ServiceID: id, Name: "http", Status: consul.HealthPassing, Type: "http"})
		}, `of type "http"`},
		{"a TTL check but no identity", "rating-nometa", false, func(id string) error {
			return byHand(&consul.AgentServiceRegistration{ID: id, Name: "rating", Address: "127.0.0.1", Port: 2004, Check: ttlCheck(id)})
		}, "no " + identity.MetaKey},
		{"a TTL check and another instance's identity", "rating-copy", false, func(id string) error {
			return byHand(&consul.AgentServiceRegistration{ID: id, Name: "rating", Address: "127.0.0.1", Port: 2005, Check: ttlCheck(id), Meta: meta("rating-other")})
		}, `names the instance "rating/rating-other"`},
	}
	for _, o := range others {
		if err := o.register(o.id); err != nil {
			t.Fatalf("%s: %v", o.name, err)
		}
	}
	id := NewInstanceID("rating")
	want := []string{register(t, client, id, 2000)}
	if got, want := want[0], "rating/"+id+"@127.0.0.1:2000"; got != want {
		t.Fatalf("instance string %q, want %q", got, want)
	}
	waitUntil(t, 10*time.Second, "every entry in the catalog", func() bool {
		entries, _, err := client.Health().Service("rating", "", false, nil)
		return err == nil && len(entries) == 1+len(others)
	})

	w := watchRating(t, client, DefaultGrace)
	waitUntil(t, 5*time.Second, fmt.Sprint("instances ", want), func() bool { return slices.Equal(w.last(), want) })
	if got := w.metric(t, "movieapp_discovery_ignored_entries"); got != float64(len(others)) {
		t.Errorf("ignored_entries = %v, want %d", got, len(others))
	}
	// More answers listing the same entries: an instance comes and goes,
	// twice.
	for i := range 2 {
		extra := register(t, client, fmt.Sprintf("rating-extra-%d", i), 2010+i)
		waitUntil(t, 10*time.Second, "extra instance listed", func() bool { return slices.Contains(w.last(), extra) })
		if err := client.Agent().ServiceDeregister(fmt.Sprintf("rating-extra-%d", i)); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, 10*time.Second, "extra instance dropped", func() bool { return slices.Equal(w.last(), want) })
	}

	const ignoring = "ignoring a Consul entry that is not a movieapp instance"
	logged := func(id string) []logRecord {
		return slices.DeleteFunc(w.logs.find(ignoring), func(r logRecord) bool { return r.attrs["id"] != id })
	}
	for _, o := range others {
		t.Run(o.name, func(t *testing.T) {
			recs := logged(o.id)
			if len(recs) != 1 {
				t.Fatalf("logged %d times, want once: %+v", len(recs), recs)
			}
			r := recs[0]
			if r.level != slog.LevelWarn || r.attrs["target"] != "rating" || !strings.HasPrefix(r.attrs["addr"], "127.0.0.1:") {
				t.Errorf("logged %+v, want a WARN with target rating and the entry's address", r)
			}
			if !strings.Contains(r.attrs["reason"], o.wantReason) {
				t.Errorf("reason %q, want it to say %q", r.attrs["reason"], o.wantReason)
			}
		})
	}

	// Gone from Consul, an entry is forgotten: back, it is logged again.
	for _, o := range others {
		var err error
		if o.catalog {
			_, err = client.Catalog().Deregister(&consul.CatalogDeregistration{Node: "by-hand", ServiceID: o.id}, nil)
		} else {
			err = client.Agent().ServiceDeregister(o.id)
		}
		if err != nil {
			t.Fatalf("deregister %s: %v", o.id, err)
		}
	}
	waitUntil(t, 10*time.Second, "ignored_entries 0", func() bool { return w.metric(t, "movieapp_discovery_ignored_entries") == 0 })
	if err := others[0].register(others[0].id); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "an entry back logged again", func() bool { return len(logged(others[0].id)) == 2 })
	if got := w.metric(t, "movieapp_discovery_ignored_entries"); got != 1 {
		t.Errorf("ignored_entries = %v, want 1", got)
	}
}

// TestInstancerHoldsBackEveryInstanceCritical turns two instances critical
// in one Consul transaction, as a resuming Consul firing its overdue TTL
// timers does, or deregisters them, or puts them in maintenance, and checks
// which answers the Instancer holds back. The instances are registered in
// the catalog on a node of their own, so that the agent's anti-entropy
// leaves the test's changes alone and one transaction changes both at once.
// The grace is long where the instances must be dropped at once, so that
// dropping them within a few seconds tells the two apart without measuring
// time.
func TestInstancerHoldsBackEveryInstanceCritical(t *testing.T) {
	const (
		a, b = "rating-a", "rating-b"
		long = 30 * time.Second
	)
	const holdStarted = "every instance turned critical at once; keeping them for the grace to confirm"
	instA := identity.Instance(identity.Of("rating", a), "127.0.0.1:3001")
	instB := identity.Instance(identity.Of("rating", b), "127.0.0.1:3002")
	tests := []struct {
		name  string
		grace time.Duration
		// act changes the instances and returns what the Instancer then
		// publishes in the end.
		act       func(t *testing.T, c *consul.Client, w watched) []string
		wantHeld  bool   // a hold started
		wantEmpty bool   // the empty set was published on the way
		wantLog   string // logged at the end of the hold
	}{
		{"both critical and still critical after the grace: held, then dropped", 2 * time.Second,
			func(t *testing.T, c *consul.Client, w watched) []string {
				setChecks(t, c, consul.HealthCritical, a, b)
				return []string{}
			}, true, true, "instances still critical after the grace: confirmed; dropping them"},
		{"both critical, then passing again one by one within the grace: never fewer", long,
			func(t *testing.T, c *consul.Client, w watched) []string {
				setChecks(t, c, consul.HealthCritical, a, b)
				waitUntil(t, 10*time.Second, "hold logged", func() bool { return w.logs.has(holdStarted) })
				setChecks(t, c, consul.HealthPassing, a)
				// b, still critical, stays held while a passes.
				waitUntil(t, 10*time.Second, "a passing in Consul", func() bool { return passing(t, c, a) })
				setChecks(t, c, consul.HealthPassing, b)
				return []string{instA, instB}
			}, true, false, "not confirmed: the instances held are passing again or gone from Consul"},
		{"both critical, then deregistered within the grace: dropped then", long,
			func(t *testing.T, c *consul.Client, w watched) []string {
				setChecks(t, c, consul.HealthCritical, a, b)
				waitUntil(t, 10*time.Second, "hold logged", func() bool { return w.logs.has(holdStarted) })
				deregister(t, c, a, b)
				return []string{}
			}, true, true, "not confirmed: the instances held are passing again or gone from Consul"},
		{"both deregistered: dropped at once", long,
			func(t *testing.T, c *consul.Client, w watched) []string {
				deregister(t, c, a, b)
				return []string{}
			}, false, true, ""},
		{"both in maintenance: dropped at once", long,
			func(t *testing.T, c *consul.Client, w watched) []string {
				maintenance(t, c, a, b)
				return []string{}
			}, false, true, ""},
		{"one critical: dropped at once", long,
			func(t *testing.T, c *consul.Client, w watched) []string {
				setChecks(t, c, consul.HealthCritical, a)
				return []string{instB}
			}, false, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			agent := devconsul.New(t)
			client, err := agent.Client("")
			if err != nil {
				t.Fatal(err)
			}
			catalogRegister(t, client, a, 3001)
			catalogRegister(t, client, b, 3002)
			both := []string{instA, instB}
			w := watchRating(t, client, tt.grace)
			waitUntil(t, 10*time.Second, fmt.Sprint("instances ", both), func() bool { return slices.Equal(w.last(), both) })
			before := len(w.all())

			want := tt.act(t, client, w)
			waitUntil(t, 10*time.Second, fmt.Sprint("instances ", want), func() bool { return slices.Equal(w.last(), want) })
			if tt.wantLog != "" {
				waitUntil(t, 10*time.Second, "logged: "+tt.wantLog, func() bool { return w.logs.has(tt.wantLog) })
			}

			if held := w.metric(t, "movieapp_discovery_holds_total") == 1; held != tt.wantHeld {
				t.Errorf("a hold started: %v, want %v; logs: %+v", held, tt.wantHeld, w.logs.all())
			}
			if sawEmpty := w.sawEmpty(); sawEmpty != tt.wantEmpty {
				t.Errorf("the empty set published: %v, want %v; events: %+v", sawEmpty, tt.wantEmpty, w.all())
			}
			// Until the end, a held instance never leaves the view.
			if tt.wantHeld {
				for _, ev := range w.all()[before:] {
					if n := len(ev.Instances); ev.Err == nil && n > 0 && n < 2 {
						t.Errorf("published %v during the hold: a held instance left the view early; events: %+v", ev.Instances, w.all())
					}
				}
			}
		})
	}
}

// testNode is the catalog node the hold test registers its instances on.
const testNode = "test-host"

// catalogRegister registers the instance id of rating at 127.0.0.1:port
// in the catalog, as Consul.Register would through an agent: a passing TTL
// check of its own and the identity in its metadata.
func catalogRegister(t *testing.T, c *consul.Client, id string, port int) {
	t.Helper()
	_, err := c.Catalog().Register(&consul.CatalogRegistration{
		Node:    testNode,
		Address: "127.0.0.1",
		Service: &consul.AgentService{ID: id, Service: "rating", Address: "127.0.0.1", Port: port,
			Meta: map[string]string{identity.MetaKey: identity.Of("rating", id)}},
		Checks: consul.HealthChecks{ttlCheck(id, consul.HealthPassing)},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
}

func ttlCheck(id, status string) *consul.HealthCheck {
	return &consul.HealthCheck{Node: testNode, CheckID: checkID(id), Name: "rating TTL heartbeat",
		Status: status, ServiceID: id, ServiceName: "rating", Type: "ttl"}
}

// txn applies ops in one Consul transaction: one change that one answer of
// a blocking query sees whole.
func txn(t *testing.T, c *consul.Client, ops consul.TxnOps) {
	t.Helper()
	ok, resp, _, err := c.Txn().Txn(ops, nil)
	if err != nil || !ok {
		var why []string
		if resp != nil {
			for _, e := range resp.Errors {
				why = append(why, e.What)
			}
		}
		t.Fatalf("transaction: ok %v, %v, %v", ok, err, why)
	}
}

// setChecks sets the TTL checks of the instances ids to status, at once.
func setChecks(t *testing.T, c *consul.Client, status string, ids ...string) {
	t.Helper()
	var ops consul.TxnOps
	for _, id := range ids {
		ops = append(ops, &consul.TxnOp{Check: &consul.CheckTxnOp{Verb: consul.CheckSet, Check: *ttlCheck(id, status)}})
	}
	txn(t, c, ops)
}

// deregister removes the instances ids, at once.
func deregister(t *testing.T, c *consul.Client, ids ...string) {
	t.Helper()
	var ops consul.TxnOps
	for _, id := range ids {
		ops = append(ops, &consul.TxnOp{Service: &consul.ServiceTxnOp{Verb: consul.ServiceDelete, Node: testNode, Service: consul.AgentService{ID: id, Service: "rating"}}})
	}
	txn(t, c, ops)
}

// maintenance puts the instances ids in maintenance, at once, with the
// check Consul's own maintenance mode adds.
func maintenance(t *testing.T, c *consul.Client, ids ...string) {
	t.Helper()
	var ops consul.TxnOps
	for _, id := range ids {
		ops = append(ops, &consul.TxnOp{Check: &consul.CheckTxnOp{Verb: consul.CheckSet, Check: consul.HealthCheck{
			Node: testNode, CheckID: consul.ServiceMaintPrefix + id, Name: "Service Maintenance Mode",
			Status: consul.HealthMaint, ServiceID: id, ServiceName: "rating"}}})
	}
	txn(t, c, ops)
}

// passing reports whether Consul lists the instance id as passing.
func passing(t *testing.T, c *consul.Client, id string) bool {
	t.Helper()
	entries, _, err := c.Health().Service("rating", "", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(entries, func(e *consul.ServiceEntry) bool { return e.Service.ID == id })
}

// TestInstancerPublishesWeightAndTags registers instances with a weight,
// tags and metadata as -weight, -tags and -meta do, and checks that Consul
// holds them as given and that the instancer publishes the weight and tags
// with each instance for the balancer (routing.With), the default ones as
// the bare instance string. Metadata setting the identity key is refused.
func TestInstancerPublishesWeightAndTags(t *testing.T) {
	c, err := devconsul.New(t).Client("")
	if err != nil {
		t.Fatal(err)
	}
	reg := NewConsul(c)
	ctx := context.Background()
	canary := Instance{ID: NewInstanceID("rating"), Service: "rating", Host: "127.0.0.1", Port: 3101,
		Weight: 9, Tags: []string{"canary", "v2"}, Meta: map[string]string{"version": "v2"}}
	plain := Instance{ID: NewInstanceID("rating"), Service: "rating", Host: "127.0.0.1", Port: 3102}
	for _, in := range []Instance{canary, plain} {
		if err := reg.Register(ctx, in, time.Minute, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	svc, _, err := c.Agent().Service(canary.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if svc.Weights.Passing != 9 || svc.Weights.Warning != 1 || !slices.Equal(svc.Tags, canary.Tags) ||
		svc.Meta["version"] != "v2" || svc.Meta[identity.MetaKey] != identity.Of("rating", canary.ID) {
		t.Errorf("Consul holds weights %+v, tags %v, meta %v", svc.Weights, svc.Tags, svc.Meta)
	}

	w := watchRating(t, c, DefaultGrace)
	want := []string{
		routing.With(identity.Instance(identity.Of("rating", canary.ID), canary.Addr()), routing.Attrs{Weight: 9, Tags: canary.Tags}),
		identity.Instance(identity.Of("rating", plain.ID), plain.Addr()),
	}
	slices.Sort(want)
	waitUntil(t, 10*time.Second, "both instances published with their attributes", func() bool {
		got := slices.Sorted(slices.Values(w.last()))
		return slices.Equal(got, want)
	})
	if _, a := routing.Split(want[slices.IndexFunc(want, func(s string) bool { return strings.Contains(s, canary.ID) })]); a.Weight != 9 || !a.Has("canary") {
		t.Errorf("published attributes %+v", a)
	}

	bad := plain
	bad.ID, bad.Meta = NewInstanceID("rating"), map[string]string{identity.MetaKey: "rating/someone-else"}
	if err := reg.Register(ctx, bad, time.Minute, time.Minute); !errors.Is(err, ErrInvalidInstance) {
		t.Errorf("Register with the identity key in Meta: %v, want ErrInvalidInstance", err)
	}
}

// TestSameInstanceWhateverItsAttributes: an instance that re-registered
// with another weight is the same instance to the merges of the grace
// periods: listed once, with its new attributes.
func TestSameInstanceWhateverItsAttributes(t *testing.T) {
	x, y := "rating/x@127.0.0.1:1", "rating/y@127.0.0.1:2"
	x9 := routing.With(x, routing.Attrs{Weight: 9})
	if got := intersect([]string{x, y}, []string{x9}); !slices.Equal(got, []string{x}) {
		t.Errorf("intersect = %v, want [%s]", got, x)
	}
	w := &Instancer{known: []string{x, y}}
	want := []string{x9, y}
	slices.Sort(want)
	if got := w.withLastKnown([]string{x9}); !slices.Equal(got, want) {
		t.Errorf("withLastKnown = %v, want %v: the instance once, with its new weight", got, want)
	}
}
