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
	httptransport "github.com/go-kit/kit/transport/http"

	"movieexample.com/metadata"
	"movieexample.com/pkg/requestid"
	"movieexample.com/rating"
)

// metadataFactory builds the endpoint for one metadata instance: an ID in,
// metadata.Metadata out.
func metadataFactory(client *http.Client, cfg Config) sd.Factory {
	return factory(client, "/metadata", func(id string) string {
		return "id=" + url.QueryEscape(id)
	}, decode(cfg.MaxResponseBytes, checkMetadata))
}

// ratingFactory builds the endpoint for one rating instance: a movie ID in,
// rating.Aggregate out.
func ratingFactory(client *http.Client, cfg Config) sd.Factory {
	return factory(client, "/rating", func(id string) string {
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

func factory(client *http.Client, path string, query func(id string) string, dec httptransport.DecodeResponseFunc) sd.Factory {
	return func(instance string) (endpoint.Endpoint, io.Closer, error) {
		tgt := &url.URL{Scheme: "http", Host: instance, Path: path}
		enc := func(_ context.Context, r *http.Request, req any) error {
			r.URL.RawQuery = query(req.(string))
			return nil
		}
		c := httptransport.NewClient(http.MethodGet, tgt, enc, dec,
			httptransport.SetClient(client),
			httptransport.ClientBefore(forwardRequestID),
		)
		return c.Endpoint(), nil, nil
	}
}

// forwardRequestID passes the caller's request ID upstream, so one ID
// follows the request through every service's logs.
func forwardRequestID(ctx context.Context, r *http.Request) context.Context {
	if id := requestid.FromContext(ctx); id != "" {
		r.Header.Set(requestid.Header, id)
	}
	return ctx
}

// decode reads at most max bytes of an upstream answer and turns it into a
// T, or an error the retry policy understands. The body is read to its end
// (within max) even for errors, so the connection can be reused.
func decode[T any](max int64, check func(T) error) httptransport.DecodeResponseFunc {
	return func(_ context.Context, resp *http.Response) (any, error) {
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
