package server

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"testing"

	"movieexample.com/pkg/requestid"
)

// discard is a ResponseWriter that keeps nothing, so the benchmarks below
// time the handlers and not a recorder.
type discard struct{ h http.Header }

func (w *discard) Header() http.Header         { return w.h }
func (w *discard) Write(b []byte) (int, error) { return len(b), nil }
func (w *discard) WriteHeader(int)             {}

// BenchmarkHandlerStack is what the middleware every request goes through
// (request ID, metrics, panic recovery, method routing) costs one hop, over
// a handler as bare as the benchmark's floor backends:
//
//	go test -run '^$' -bench HandlerStack -count 6 ./pkg/server
func BenchmarkHandlerStack(b *testing.B) {
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
		mux := NewMux()
		mux.Handle("/metadata", Methods{http.MethodGet: bare})
		return mux
	}
	metrics := func() *httpMetrics { return newHTTPMetrics(NewMetricsRegistry()) }
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, bc := range []struct {
		name string
		h    http.Handler
	}{
		{"bare", func() http.Handler { mux := http.NewServeMux(); mux.Handle("/metadata", bare); return mux }()},
		{"methods", routes()},
		{"methods+requestid", requestid.Middleware(routes())},
		{"methods+metrics", metrics().instrument(false, logger, routes())},
		{"methods+recover", recoverPanics(logger, routes())},
		{"all", handler(App{Routes: routes(), Logger: logger, Metrics: NewMetricsRegistry()}, func() error { return nil })},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req, err := http.NewRequest(http.MethodGet, "http://movieapp/metadata?id=1", nil)
			if err != nil {
				b.Fatal(err)
			}
			req.Header.Set(requestid.Header, "0b2f1c1e-8d4e-4f55-9a57-2f5d7f0c6f11")
			b.ReportAllocs()
			for b.Loop() {
				r := *req // the mux records the pattern on the request
				bc.h.ServeHTTP(&discard{h: http.Header{}}, &r)
			}
		})
	}
}
