package gateway

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"
	"github.com/prometheus/client_golang/prometheus"
)

// staticInstancer publishes a fixed set of instances, each subscriber with
// its own copy (the endpointer sorts what it receives).
type staticInstancer []string

func (s staticInstancer) Register(ch chan<- sd.Event) { ch <- sd.Event{Instances: slices.Clone(s)} }
func (s staticInstancer) Deregister(chan<- sd.Event)  {}
func (s staticInstancer) Stop()                       {}

// TestEveryInstanceEjected ejects both instances of each upstream, then
// heals them: metadata, which movie cannot answer without, is tried anyway
// and answers; rating, which movie can leave out, fails at once without a
// call reaching an instance.
func TestEveryInstanceEjected(t *testing.T) {
	var failing atomic.Bool
	var hits atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if failing.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		if r.URL.Path == "/rating" {
			io.WriteString(w, `{"id":"1","type":"movie","rating":4.5,"count":2}`)
			return
		}
		io.WriteString(w, `{"id":"1","title":"Ikiru"}`)
	})
	var addrs []string
	for range 2 {
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		addrs = append(addrs, strings.TrimPrefix(srv.URL, "http://"))
	}
	cfg := DefaultConfig()
	cfg.BreakerFailures = 1
	cfg.BreakerCooldown = time.Hour // no trial call during the test
	reg := prometheus.NewRegistry()
	g := New(cfg, func(string) (sd.Instancer, error) { return staticInstancer(addrs), nil },
		slog.New(slog.NewTextHandler(io.Discard, nil)), reg)
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Stop)
	ctx := context.Background()

	failing.Store(true)
	for range 3 {
		_, mErr := g.Metadata(ctx, "1")
		_, rErr := g.Rating(ctx, "1")
		if !errors.Is(mErr, ErrUnavailable) || !errors.Is(rErr, ErrUnavailable) {
			t.Fatalf("with every instance failing: errors %v and %v, want ErrUnavailable", mErr, rErr)
		}
	}
	failing.Store(false)

	before := hits.Load()
	if _, err := g.Rating(ctx, "1"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("rating with every instance ejected: err = %v, want ErrUnavailable", err)
	}
	if got := hits.Load() - before; got != 0 {
		t.Errorf("rating with every instance ejected reached an instance %d times, want 0", got)
	}
	if _, err := g.Metadata(ctx, "1"); err != nil {
		t.Errorf("metadata with every instance ejected but healed: err = %v, want an answer", err)
	}
}
