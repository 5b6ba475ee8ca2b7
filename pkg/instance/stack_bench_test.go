package instance

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"movieexample.com/pkg/httpmetrics"
	"movieexample.com/pkg/identity"
	"movieexample.com/pkg/ops"
	"movieexample.com/pkg/requestid"
	"movieexample.com/pkg/web"
)

// discard is a ResponseWriter that keeps nothing, so the benchmarks below
// time the handlers and not a recorder.
type discard struct{ h http.Header }

func (w *discard) Header() http.Header         { return w.h }
func (w *discard) Write(b []byte) (int, error) { return len(b), nil }
func (w *discard) WriteHeader(int)             {}

// stackCases are the middleware every request goes through (identity
// header, request ID, metrics, in-flight limit, panic recovery, method
// routing), one at a time and all together as Run serves them, over a
// handler as bare as the benchmark's floor backends.
func stackCases() []struct {
	name string
	h    http.Handler
} {
	answer := struct {
		ID    string `json:"id"`
		Title string `json:"title"`
	}{"1", "Ikiru"}
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.URL.Query().Get("id")
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_ = json.NewEncoder(w).Encode(answer)
	})
	routes := func() *http.ServeMux {
		mux := web.NewMux()
		mux.Handle("/metadata", web.Methods{http.MethodGet: bare})
		return mux
	}
	metrics := func() *httpmetrics.Metrics { return httpmetrics.New(ops.NewRegistry()) }
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	return []struct {
		name string
		h    http.Handler
	}{
		{"bare", func() http.Handler { mux := http.NewServeMux(); mux.Handle("/metadata", bare); return mux }()},
		{"methods", routes()},
		{"methods+requestid", requestid.Middleware(routes())},
		{"methods+metrics", metrics().Handler(false, logger, routes())},
		{"methods+limit", newLimiter(DefaultMaxInFlight, routes(), ops.NewRegistry()).handler(routes())},
		{"methods+recover", web.RecoverPanics(logger, routes())},
		{"methods+identity", identity.Middleware(identity.Of("metadata", "metadata-1"), routes())},
		// What Run serves: the stack newHTTPServer builds, with the
		// operational routes on the same mux.
		{"all", (&server{app: App{Routes: routes(), Logger: logger, Metrics: ops.NewRegistry(),
			Config: Config{MaxInFlight: DefaultMaxInFlight}}}).newHTTPServer().Handler},
	}
}

// newStackRequest is a request as movie sends one upstream: with a request
// ID to keep, so that the middleware generates none.
func newStackRequest() *http.Request {
	req := httptest.NewRequest(http.MethodGet, "http://movieapp/metadata?id=1", nil)
	req.Header.Set(requestid.Header, "0b2f1c1e-8d4e-4f55-9a57-2f5d7f0c6f11")
	return req
}

// BenchmarkHandlerStack is what each middleware costs one hop, on one
// goroutine:
//
//	go test -run '^$' -bench '^BenchmarkHandlerStack$' -count 6 ./pkg/instance
func BenchmarkHandlerStack(b *testing.B) {
	for _, bc := range stackCases() {
		b.Run(bc.name, func(b *testing.B) {
			req := newStackRequest()
			b.ReportAllocs()
			for b.Loop() {
				r := *req // the mux records the pattern on the request
				bc.h.ServeHTTP(&discard{h: http.Header{}}, &r)
			}
		})
	}
}

// BenchmarkHandlerStackParallel is the same on every CPU at once, as a
// service under load runs it, where the metrics' and the limit's shared
// counters are written from several CPUs. cpu-ns/op is the process's CPU
// time per request (user and system, every thread: the garbage collector's
// too), which ns/op, wall time over the CPUs, is not.
func BenchmarkHandlerStackParallel(b *testing.B) {
	for _, bc := range stackCases() {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			start := processCPU(b)
			b.RunParallel(func(pb *testing.PB) {
				req := newStackRequest()
				w := &discard{h: http.Header{}}
				for pb.Next() {
					r := *req
					clear(w.h)
					bc.h.ServeHTTP(w, &r)
				}
			})
			b.ReportMetric(float64(processCPU(b)-start)/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU is the CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
