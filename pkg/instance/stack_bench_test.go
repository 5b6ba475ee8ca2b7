package instance

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"testing"

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

// BenchmarkHandlerStack is what the middleware every request goes through
// (identity header, request ID, metrics, panic recovery, method routing) costs one hop, over
// a handler as bare as the benchmark's floor backends:
//
//	go test -run '^$' -bench HandlerStack -count 6 ./pkg/instance
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
		mux := web.NewMux()
		mux.Handle("/metadata", web.Methods{http.MethodGet: bare})
		return mux
	}
	metrics := func() *httpmetrics.Metrics { return httpmetrics.New(ops.NewRegistry()) }
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, bc := range []struct {
		name string
		h    http.Handler
	}{
		{"bare", func() http.Handler { mux := http.NewServeMux(); mux.Handle("/metadata", bare); return mux }()},
		{"methods", routes()},
		{"methods+requestid", requestid.Middleware(routes())},
		{"methods+metrics", metrics().Handler(false, logger, routes())},
		{"methods+recover", web.RecoverPanics(logger, routes())},
		{"methods+identity", identity.Middleware(identity.Of("metadata", "metadata-1"), routes())},
		// What Run serves: the stack newHTTPServer builds, with the
		// operational routes on the same mux.
		{"all", (&server{app: App{Routes: routes(), Logger: logger, Metrics: ops.NewRegistry()}}).newHTTPServer().Handler},
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
