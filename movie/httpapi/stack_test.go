package httpapi_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"
	"github.com/prometheus/client_golang/prometheus"

	"movieexample.com/metadata"
	mdhttp "movieexample.com/metadata/httpapi"
	"movieexample.com/movie"
	"movieexample.com/movie/httpapi"
	"movieexample.com/pkg/gateway"
	"movieexample.com/pkg/identity"
	"movieexample.com/pkg/web"
	"movieexample.com/rating"
	rthttp "movieexample.com/rating/httpapi"
)

// The HTTP clients of the two services are what movie/cmd builds movie
// over.
var (
	_ movie.MetadataGetter = (*mdhttp.Client)(nil)
	_ movie.RatingGetter   = (*rthttp.Client)(nil)
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// newMovie returns movie's handler built as movie/cmd builds it, over one
// real gateway.Upstream per service whose only instance is the given one
// (an instance string, as serve returns).
func newMovie(t testing.TB, metadataInstance, ratingInstance string) http.Handler {
	t.Helper()
	reg := prometheus.NewRegistry()
	gm := gateway.NewMetrics(reg)
	md := gateway.New("metadata", mdhttp.NewFactory(web.NewTransport()), gateway.DefaultConfig(), gm, discard)
	ratingCfg := gateway.DefaultConfig()
	ratingCfg.FailFast = true // as movie/cmd: movie answers without a rating
	rt := gateway.New("rating", rthttp.NewFactory(web.NewTransport()), ratingCfg, gm, discard)
	// Upstream.Stop leaves its instancer to its creator, and a
	// FixedInstancer has nothing to stop.
	md.Watch(sd.FixedInstancer{metadataInstance})
	t.Cleanup(md.Stop)
	rt.Watch(sd.FixedInstancer{ratingInstance})
	t.Cleanup(rt.Stop)
	waitReady(t, md, rt)
	svc := movie.NewService(mdhttp.NewClient(md.Endpoint()), rthttp.NewClient(rt.Endpoint()))
	return httpapi.NewHTTPHandler(movie.MakeEndpoints(svc), discard)
}

// waitReady waits until every upstream has taken in its instances: Watch
// returns before its goroutines have, and a call made at once could find
// none.
func waitReady(t testing.TB, upstreams ...*gateway.Upstream) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, u := range upstreams {
		for u.Ready() != nil {
			if time.Now().After(deadline) {
				t.Fatalf("upstream not ready: %v", u.Ready())
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// serve starts h as the instance "<service>/<service>-test", saying so in
// its identity header as every movieapp instance does, and returns its
// instance string.
func serve(t testing.TB, service string, h http.Handler) string {
	t.Helper()
	return serveAs(t, identity.Of(service, service+"-test"), identity.Middleware(identity.Of(service, service+"-test"), h))
}

// serveAs starts h, which may say it is anyone, where discovery names the
// instance ident, and returns that instance string.
func serveAs(t testing.TB, ident string, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return identity.Instance(ident, u.Host)
}

// metadataHandler and ratingHandler are the real services' handlers over
// their seeded memory stores.
func metadataHandler() http.Handler {
	return mdhttp.NewHTTPHandler(metadata.MakeEndpoints(metadata.NewService(metadata.NewMemory(metadata.Seed))), discard)
}

func ratingHandler() http.Handler {
	return rthttp.NewHTTPHandler(rating.MakeEndpoints(rating.NewService(rating.NewMemory(rating.Seed))), discard)
}
