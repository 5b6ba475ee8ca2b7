package gateway

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metadatahttp "movieexample.com/metadata/httpapi"
	"movieexample.com/pkg/web"
	"movieexample.com/rating"
	ratinghttp "movieexample.com/rating/httpapi"
)

// TestEveryInstanceEjected ejects both instances of two upstreams, then
// heals them: metadata, which movie cannot answer without, is tried anyway
// and answers; rating, which movie can leave out (FailFast, as movie sets
// it), fails at once without a call reaching an instance.
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
		srv := httptest.NewServer(speaking(h))
		t.Cleanup(srv.Close)
		addrs = append(addrs, strings.TrimPrefix(srv.URL, "http://"))
	}
	cfg := DefaultConfig()
	cfg.BreakerFailures = 1
	cfg.BreakerCooldown = time.Hour // no trial call during the test
	rt := web.NewTransport()
	meta := metadatahttp.NewClient(newUpstream(t, "metadata", metadatahttp.NewFactory(rt), cfg, addrs...).Endpoint())
	failFast := cfg
	failFast.FailFast = true
	rate := ratinghttp.NewClient(newUpstream(t, "rating", ratinghttp.NewFactory(rt), failFast, addrs...).Endpoint())
	ctx := context.Background()
	key := rating.Key{Type: rating.RecordTypeMovie, ID: "1"}

	failing.Store(true)
	for range 3 {
		_, mErr := meta.Get(ctx, "1")
		_, rErr := rate.Get(ctx, key)
		if !errors.Is(mErr, ErrUnavailable) || !errors.Is(rErr, ErrUnavailable) {
			t.Fatalf("with every instance failing: errors %v and %v, want ErrUnavailable", mErr, rErr)
		}
	}
	failing.Store(false)

	before := hits.Load()
	if _, err := rate.Get(ctx, key); !errors.Is(err, ErrUnavailable) {
		t.Errorf("rating with every instance ejected: err = %v, want ErrUnavailable", err)
	}
	if got := hits.Load() - before; got != 0 {
		t.Errorf("rating with every instance ejected reached an instance %d times, want 0", got)
	}
	if _, err := meta.Get(ctx, "1"); err != nil {
		t.Errorf("metadata with every instance ejected but healed: err = %v, want an answer", err)
	}
}
