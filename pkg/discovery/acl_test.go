package discovery

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"
)

// fakeHealth stands in for Consul's /v1/health/service endpoint with one
// fixed answer. The query that waits for a change past the answer's index
// (what the Instancer's watch makes next) blocks until the client gives up,
// as Consul's does when nothing changes.
func fakeHealth(t *testing.T, service string, status int, body string, filtered bool) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The Instancer asks for every entry, critical ones included.
		if r.URL.Path != "/v1/health/service/"+service || r.URL.Query().Has("passing") {
			t.Errorf("unexpected query %s", r.URL)
			http.NotFound(w, r)
			return
		}
		if idx := r.URL.Query().Get("index"); idx != "" && idx != "0" {
			<-r.Context().Done()
			return
		}
		// The headers every answer of a Consul agent carries; consul/api
		// refuses an answer without X-Consul-LastContact.
		w.Header().Set("X-Consul-Index", "7")
		w.Header().Set("X-Consul-LastContact", "0")
		w.Header().Set("X-Consul-KnownLeader", "true")
		if filtered {
			w.Header().Set("X-Consul-Results-Filtered-By-ACLs", "true")
		}
		if status == http.StatusOK {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// TestInstancerReportsACLDenials checks what the Instancer publishes for
// the answers Consul gives a token short of rights, and that it takes no
// other answer for one: a 403 for a token Consul does not know, and a 200
// with every entry filtered out (an empty list) for one that lacks
// service:read or node:read, which must not pass for "no instance running".
func TestInstancerReportsACLDenials(t *testing.T) {
	const entry = `[{"Node":{"Node":"n","Address":"127.0.0.1"},
		"Service":{"ID":"metadata-1","Service":"metadata","Port":1,"Meta":{"movieapp_instance":"metadata/metadata-1"}},
		"Checks":[{"CheckID":"service:metadata-1","ServiceID":"metadata-1","Type":"ttl","Status":"passing"}]}]`
	refused := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return addr
	}
	tests := []struct {
		name          string
		consul        func(t *testing.T) string // the agent's address
		wantInstances []string                  // with no error
		wantDenied    bool                      // an error wrapping ErrPermissionDenied
		wantErrText   string                    // an error containing this (with wantDenied or not)
	}{
		{name: "answer", consul: func(t *testing.T) string { return fakeHealth(t, "metadata", 200, entry, false) },
			wantInstances: []string{"metadata/metadata-1@127.0.0.1:1"}},
		{name: "no instance", consul: func(t *testing.T) string { return fakeHealth(t, "metadata", 200, `[]`, false) },
			wantInstances: []string{}},
		{name: "some filtered out", consul: func(t *testing.T) string { return fakeHealth(t, "metadata", 200, entry, true) },
			wantInstances: []string{"metadata/metadata-1@127.0.0.1:1"}},
		{name: "all filtered out", consul: func(t *testing.T) string { return fakeHealth(t, "metadata", 200, `[]`, true) },
			wantDenied: true, wantErrText: "Consul hid every metadata instance from this token"},
		{name: "403", consul: func(t *testing.T) string { return fakeHealth(t, "metadata", 403, "ACL not found", false) },
			wantDenied: true, wantErrText: "ACL not found"},
		{name: "500", consul: func(t *testing.T) string { return fakeHealth(t, "metadata", 500, "boom", false) },
			wantErrText: "boom"},
		{name: "other error", consul: refused, wantErrText: "watch metadata instances"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, err := consul.NewClient(&consul.Config{Address: tt.consul(t)})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			in := NewInstancer(ctx, client, "metadata", 0, quietLogger(), NewMetrics(prometheus.NewRegistry()))
			defer in.Stop()
			// NewInstancer makes its first query before it returns: the
			// state a subscriber gets at once is that query's.
			evs := subscribe(t, in)
			waitUntil(t, 5*time.Second, "first event", func() bool { return len(evs.all()) > 0 })
			got := evs.all()[0]

			if tt.wantErrText == "" {
				if got.Err != nil || !slices.Equal(got.Instances, tt.wantInstances) {
					t.Errorf("event = %+v, want instances %q and no error", got, tt.wantInstances)
				}
				return
			}
			if got.Err == nil {
				t.Fatalf("event = %+v, want an error", got)
			}
			if len(got.Instances) != 0 {
				t.Errorf("error event lists instances %q", got.Instances)
			}
			if isDenied := errors.Is(got.Err, ErrPermissionDenied); isDenied != tt.wantDenied {
				t.Errorf("err = %v: wraps ErrPermissionDenied %v, want %v", got.Err, isDenied, tt.wantDenied)
			}
			if !strings.Contains(got.Err.Error(), tt.wantErrText) {
				t.Errorf("err = %v, want it to say %q", got.Err, tt.wantErrText)
			}
		})
	}
}
