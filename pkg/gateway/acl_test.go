package gateway

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"
	consul "github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"

	"movieexample.com/pkg/discovery"
)

func TestACLError(t *testing.T) {
	entry := []*consul.ServiceEntry{{Service: &consul.AgentService{Port: 1}, Node: &consul.Node{Address: "127.0.0.1"}}}
	other := errors.New("connection refused")
	tests := []struct {
		name    string
		entries []*consul.ServiceEntry
		meta    *consul.QueryMeta
		err     error
		want    error // nil, discovery.ErrPermissionDenied or other
	}{
		{"answer", entry, &consul.QueryMeta{}, nil, nil},
		{"no instance", nil, &consul.QueryMeta{}, nil, nil},
		{"some filtered out", entry, &consul.QueryMeta{ResultsFilteredByACLs: true}, nil, nil},
		{"all filtered out", nil, &consul.QueryMeta{ResultsFilteredByACLs: true}, nil, discovery.ErrPermissionDenied},
		{"403", nil, nil, consul.StatusError{Code: http.StatusForbidden, Body: "ACL not found"}, discovery.ErrPermissionDenied},
		{"500", nil, nil, consul.StatusError{Code: http.StatusInternalServerError, Body: "boom"}, nil},
		{"other error", nil, nil, other, other},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := aclError("metadata", tt.entries, tt.meta, tt.err)
			switch {
			case tt.want == nil && tt.err == nil && got != nil:
				t.Errorf("aclError = %v, want nil", got)
			case tt.want == nil && tt.err != nil && !errors.Is(got, tt.err):
				t.Errorf("aclError = %v, want %v unchanged", got, tt.err)
			case tt.want != nil && !errors.Is(got, tt.want):
				t.Errorf("aclError = %v, want %v", got, tt.want)
			}
		})
	}
}

// eventInstancer is an sd.Instancer whose events the test sends.
type eventInstancer struct {
	mu  sync.Mutex
	chs []chan<- sd.Event
	now sd.Event
}

func (i *eventInstancer) Register(ch chan<- sd.Event) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.chs = append(i.chs, ch)
	ch <- i.now
}

func (i *eventInstancer) Deregister(ch chan<- sd.Event) {
	i.mu.Lock()
	defer i.mu.Unlock()
	for n, c := range i.chs {
		if c == ch {
			i.chs = append(i.chs[:n], i.chs[n+1:]...)
			return
		}
	}
}

func (i *eventInstancer) Stop() {}

func (i *eventInstancer) send(ev sd.Event) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.now = ev
	for _, c := range i.chs {
		c <- ev
	}
}

func waitReady(t *testing.T, g *Gateway, what string, cond func(error) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for err := g.Ready(); !cond(err); err = g.Ready() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: Ready() = %v", what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReadySaysWhyNothingWasDiscovered: go-kit's instancer only logs a
// failed lookup; readiness must say what it was.
func TestReadySaysWhyNothingWasDiscovered(t *testing.T) {
	denied := fmt.Errorf("%w: Consul hid every metadata instance", discovery.ErrPermissionDenied)
	instancers := map[string]*eventInstancer{
		"metadata": {now: sd.Event{Err: denied}},
		"rating":   {now: sd.Event{Instances: []string{"127.0.0.1:1"}}},
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	g := New(DefaultConfig(), func(s string) (sd.Instancer, error) { return instancers[s], nil }, logger, prometheus.NewRegistry())
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	defer g.Stop()

	waitReady(t, g, "permission error reported for metadata alone", func(err error) bool {
		return errors.Is(err, discovery.ErrPermissionDenied) && !strings.Contains(err.Error(), "rating")
	})
	instancers["metadata"].send(sd.Event{Instances: []string{"127.0.0.1:2"}})
	waitReady(t, g, "ready once discovery works", func(err error) bool { return err == nil })
	// A later failure leaves the known instances, and readiness, alone.
	instancers["metadata"].send(sd.Event{Err: denied})
	for deadline := time.Now().Add(10 * time.Second); g.metadata.discoveryErr() == nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the failed lookup was not seen within 10s")
		}
	}
	if err := g.Ready(); err != nil {
		t.Errorf("Ready() after a failed lookup with instances known = %v, want nil", err)
	}
}
