package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/sd"

	"movieexample.com/metadata"
	"movieexample.com/pkg/requestid"
	"movieexample.com/rating"
)

// metadataFactory builds the endpoint for one metadata instance: an ID in,
// metadata.Metadata out.
func metadataFactory(rt http.RoundTripper, cfg Config) sd.Factory {
	return factory(rt, "/metadata", func(id string) string {
		return "id=" + url.QueryEscape(id)
	}, decode(cfg.MaxResponseBytes, checkMetadata))
}

// ratingFactory builds the endpoint for one rating instance: a movie ID in,
// rating.Aggregate out.
func ratingFactory(rt http.RoundTripper, cfg Config) sd.Factory {
	return factory(rt, "/rating", func(id string) string {
		return "type=" + string(rating.RecordTypeMovie) + "&id=" + url.QueryEscape(id)
	}, decode(cfg.MaxResponseBytes, checkAggregate))
}

// checkMetadata accepts only metadata the metadata service itself would
// store: an upstream answer is not trusted further than a client's request.
func checkMetadata(m metadata.Metadata) error { return m.Validate() }

// checkAggregate accepts only an average a set of valid ratings can have.
func checkAggregate(a rating.Aggregate) error {
	if a.Count < 1 || math.IsNaN(a.Average) || a.Average < rating.MinValue || a.Average > rating.MaxValue {
		return fmt.Errorf("rating %v over %d ratings is out of range", a.Average, a.Count)
	}
	return nil
}

// factory builds the endpoint for one instance: a GET of path with the
// query query makes of the request (a movie ID), its answer decoded by dec,
// and the caller's request ID forwarded so one ID follows the request
// through every service's logs.
//
// It is what go-kit's httptransport.Client does for a GET, without what a
// GET does not need: the go-kit client formats and parses its target URL
// again, wraps the context in one more cancel and copies the request on
// every call. And a call is one round trip, made on the transport itself:
// http.Client would add what an upstream call must not do (follow
// redirects, keep cookies) and copy the request's headers on every call in
// case it does (docs/benchmarks.md has what both cost). An upstream's 3xx is
// an answer the decoder refuses, as any other status it does not expect.
func factory(rt http.RoundTripper, path string, query func(id string) string, dec decodeFunc) sd.Factory {
	return func(instance string) (endpoint.Endpoint, io.Closer, error) {
		target := "http://" + instance + path + "?"
		return func(ctx context.Context, req any) (any, error) {
			r, err := http.NewRequestWithContext(ctx, http.MethodGet, target+query(req.(string)), nil)
			if err != nil {
				return nil, err
			}
			if id := requestid.FromContext(ctx); id != "" {
				r.Header.Set(requestid.Header, id)
			}
			resp, err := rt.RoundTrip(r)
			if err != nil {
				return nil, err
			}
			defer resp.Body.Close()
			return dec(resp)
		}, nil, nil
	}
}

// decodeFunc turns an upstream answer into the endpoint's response.
type decodeFunc func(*http.Response) (any, error)

// decode reads at most max bytes of an upstream answer and turns it into a
// T, or an error the retry policy understands. The body is read to its end
// (within max) even for errors, so the connection can be reused.
func decode[T any](max int64, check func(T) error) decodeFunc {
	return func(resp *http.Response) (any, error) {
		body, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
		if err != nil {
			return nil, fmt.Errorf("read upstream body: %w", err)
		}
		switch {
		case resp.StatusCode == http.StatusNotFound:
			return nil, ErrNotFound
		case resp.StatusCode >= 500:
			return nil, &statusError{code: resp.StatusCode}
		case resp.StatusCode != http.StatusOK:
			return nil, fmt.Errorf("%w: status %d", ErrBadResponse, resp.StatusCode)
		case int64(len(body)) > max:
			return nil, fmt.Errorf("%w: body over %d bytes", ErrBadResponse, max)
		}
		var v T
		if err := json.Unmarshal(body, &v); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadResponse, err)
		}
		if err := check(v); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadResponse, err)
		}
		return v, nil
	}
}
