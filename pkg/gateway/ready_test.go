package gateway

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/sd"
	"github.com/prometheus/client_golang/prometheus"

	"movieexample.com/pkg/discovery"
)

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

// nopFactory makes endpoints that are never called: these tests only
// discover.
func nopFactory(string) (endpoint.Endpoint, io.Closer, error) { return endpoint.Nop, nil, nil }

func waitReady(t *testing.T, u *Upstream, what string, cond func(error) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for err := u.Ready(); !cond(err); err = u.Ready() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: Ready() = %v", what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReadySaysWhyNothingWasDiscovered: go-kit's endpointer only logs a
// failed lookup; readiness must say what it was, for the upstream that
// failed alone.
func TestReadySaysWhyNothingWasDiscovered(t *testing.T) {
	denied := fmt.Errorf("%w: Consul hid every metadata instance", discovery.ErrPermissionDenied)
	metaInstancer := &eventInstancer{now: sd.Event{Err: denied}}
	ratingInstancer := &eventInstancer{now: sd.Event{Instances: []string{"127.0.0.1:1"}}}
	m := NewMetrics(prometheus.NewRegistry())
	meta := New("metadata", nopFactory, DefaultConfig(), m, quietLogger())
	meta.Watch(metaInstancer)
	defer meta.Stop()
	rate := New("rating", nopFactory, DefaultConfig(), m, quietLogger())
	rate.Watch(ratingInstancer)
	defer rate.Stop()

	waitReady(t, meta, "permission error reported for metadata", func(err error) bool {
		return errors.Is(err, discovery.ErrPermissionDenied) && strings.Contains(err.Error(), "no metadata instance discovered")
	})
	waitReady(t, rate, "rating ready, its discovery working", func(err error) bool { return err == nil })
	metaInstancer.send(sd.Event{Instances: []string{"127.0.0.1:2"}})
	waitReady(t, meta, "ready once discovery works", func(err error) bool { return err == nil })
	// A later failure leaves the known instances, and readiness, alone.
	metaInstancer.send(sd.Event{Err: denied})
	for deadline := time.Now().Add(10 * time.Second); meta.lastErr.Load() == nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the failed lookup was not seen within 10s")
		}
	}
	if err := meta.Ready(); err != nil {
		t.Errorf("Ready() after a failed lookup with instances known = %v, want nil", err)
	}
}
