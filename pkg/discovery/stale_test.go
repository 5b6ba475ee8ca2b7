package discovery

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"movieexample.com/pkg/identity"
)

// staleConsul serves Consul's health endpoint for rating from a script of
// answers, one per query, each with how long ago the answering server heard
// from its leader; past the script, a query blocks as a blocking query with
// nothing new does. A real cluster that loses its leader is what the
// e2e tests use; this shows the Instancer's side of it, answer by answer.
type staleConsul struct {
	t       *testing.T
	mu      sync.Mutex
	script  []staleAnswer
	next    int
	noStale bool // a query without ?stale was made
	// afterFirst, if set, holds every query after the first until closed:
	// the test subscribes to an Instancer that is already watching, and
	// would miss the first answer if the next ones replaced it first.
	afterFirst chan struct{}
}

type staleAnswer struct {
	ids         []string // passing instances of rating
	lastContact time.Duration
}

func (c *staleConsul) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	if _, ok := r.URL.Query()["stale"]; !ok {
		c.noStale = true
	}
	if c.next > 0 && c.afterFirst != nil {
		c.mu.Unlock()
		select {
		case <-c.afterFirst:
		case <-r.Context().Done():
			return
		}
		c.mu.Lock()
	}
	if c.next >= len(c.script) {
		c.mu.Unlock()
		<-r.Context().Done()
		return
	}
	a := c.script[c.next]
	c.next++
	index := c.next
	c.mu.Unlock()
	entries := []*consul.ServiceEntry{}
	for _, id := range a.ids {
		entries = append(entries, &consul.ServiceEntry{
			Node: &consul.Node{Node: "host", Address: "127.0.0.1"},
			Service: &consul.AgentService{ID: id, Service: "rating", Address: "127.0.0.1", Port: stalePort(id),
				Meta: map[string]string{identity.MetaKey: identity.Of("rating", id)}},
			Checks: consul.HealthChecks{{CheckID: checkID(id), ServiceID: id, Type: "ttl", Status: consul.HealthPassing}},
		})
	}
	w.Header().Set("X-Consul-Index", strconv.Itoa(index))
	w.Header().Set("X-Consul-LastContact", strconv.FormatInt(a.lastContact.Milliseconds(), 10))
	w.Header().Set("X-Consul-KnownLeader", strconv.FormatBool(a.lastContact < MaxStale))
	if err := json.NewEncoder(w).Encode(entries); err != nil {
		c.t.Error(err)
	}
}

// stalePort is where the instance id listens: rating-a at 3001, rating-b at
// 3002...
func stalePort(id string) int { return 3000 + int(id[len(id)-1]-'a') + 1 }

// TestInstancerStaleReads: the watch reads stale, and an answer from a
// server that lost touch with its leader for longer than MaxStale may add
// instances but not remove them, logged while it lasts.
func TestInstancerStaleReads(t *testing.T) {
	const lost = MaxStale + 25*time.Second
	fake := &staleConsul{t: t, script: []staleAnswer{
		{[]string{"rating-a", "rating-b"}, 0},    // the first query, fresh
		{[]string{"rating-a"}, lost},             // stale: b stays
		{[]string{"rating-a", "rating-c"}, lost}, // stale: c is added
		{[]string{"rating-c"}, 10 * time.Millisecond},
	}, afterFirst: make(chan struct{})}
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	client, err := NewClient(strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	inst := func(id string) string {
		return identity.Instance(identity.Of("rating", id), fmt.Sprintf("127.0.0.1:%d", stalePort(id)))
	}
	w := watchRating(t, client, 0) // no grace: nothing but staleness keeps an instance
	waitUntil(t, 10*time.Second, "the first answer published", func() bool {
		return slices.Equal(w.last(), []string{inst("rating-a"), inst("rating-b")})
	})
	close(fake.afterFirst)
	waitUntil(t, 10*time.Second, "the last answer published", func() bool {
		return slices.Equal(w.last(), []string{inst("rating-c")})
	})

	var sets [][]string
	for _, ev := range w.all() {
		if ev.Err == nil {
			sets = append(sets, ev.Instances)
		}
	}
	want := [][]string{
		{inst("rating-a"), inst("rating-b")},
		{inst("rating-a"), inst("rating-b"), inst("rating-c")},
		{inst("rating-c")},
	}
	if !slices.EqualFunc(sets, want, slices.Equal) {
		t.Errorf("published %v, want %v: a stale answer removed an instance, or a fresh one did not", sets, want)
	}
	for _, msg := range []string{
		"service discovery reading stale data: Consul's servers have lost their leader; answers may add instances but not remove them",
		"service discovery reading fresh data again",
	} {
		if n := len(w.logs.find(msg)); n != 1 {
			t.Errorf("%q logged %d times, want once", msg, n)
		}
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if fake.noStale {
		t.Error("a query was not a stale read")
	}
}
