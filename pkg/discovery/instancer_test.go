package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"
	consul "github.com/hashicorp/consul/api"

	"movieexample.com/internal/devconsul"
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

// logRecords keeps the messages a logger wrote.
type logRecords struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecords) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}
func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecords) WithGroup(string) slog.Handler      { return l }

func (l *logRecords) has(msg string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Contains(l.msgs, msg)
}

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

func register(t *testing.T, c *consul.Client, id string, port int) {
	t.Helper()
	err := c.Agent().ServiceRegister(&consul.AgentServiceRegistration{ID: id, Name: "rating", Address: "127.0.0.1", Port: port})
	if err != nil {
		t.Fatal(err)
	}
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
			register(t, client, "rating-a", 1001)
			register(t, client, "rating-b", 1002)
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
			in := NewInstancer(ctx, client, "rating", tc.grace, slog.New(logs))
			defer in.Stop()
			evs := subscribe(t, in)
			both := []string{"127.0.0.1:1001", "127.0.0.1:1002"}
			// The subscriber records events on a goroutine of its own.
			waitUntil(t, 5*time.Second, "first instances "+fmt.Sprint(both), func() bool { return slices.Equal(evs.last(), both) })

			agent.Stop()
			waitUntil(t, 10*time.Second, "instancer sees Consul gone", func() bool { return logs.has("service discovery failing; keeping the last known instances") })
			if err := agent.Resume(context.Background()); err != nil {
				t.Fatal(err)
			}
			waitUntil(t, 30*time.Second, "instancer sees Consul back", func() bool { return logs.has("service discovery recovered") })
			register(t, client, "rating-a", 1001) // b never comes back

			one := []string{"127.0.0.1:1001"}
			waitUntil(t, 30*time.Second, "b dropped", func() bool { return slices.Equal(evs.last(), one) })
			sawEmpty := false
			for _, ev := range evs.all() {
				if ev.Err == nil && len(ev.Instances) == 0 {
					sawEmpty = true
				}
			}
			if sawEmpty != tc.wantEmpty {
				t.Errorf("an empty set was published: %v, want %v; events: %+v", sawEmpty, tc.wantEmpty, evs.all())
			}
		})
	}
}
