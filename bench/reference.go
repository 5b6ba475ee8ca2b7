// Package bench measures the movie API against two reference systems built
// here and nowhere else: the fan-out floor (a bare net/http gateway with
// hard-coded backend addresses calling two bare backends concurrently and
// merging their JSON, the least work this architecture can do per request)
// and the per-request lookup (the same gateway asking Consul for healthy
// instances on every upstream call, as the tutorial design does). Run drives
// all three with the same load in one run and prints one table. With
// Config.MovieB it also drives a second movie binary, in turn with the
// first, for an A/B of two builds of movie; with Config.BuildB, a whole
// second movieapp from another build of the three services, on a Consul of
// its own, for an A/B of the backends too.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"time"

	consul "github.com/hashicorp/consul/api"

	"movieexample.com/metadata"
	"movieexample.com/movie"
	"movieexample.com/rating"
)

// Errors of the reference gateway's upstream calls.
var (
	// errNotFound is an upstream's 404.
	errNotFound = errors.New("not found upstream")
	// errNoInstance means Consul knows no healthy instance of a backend.
	errNoInstance = errors.New("no healthy instance")
)

// Resolver returns the address (host:port) of an instance of a backend.
type Resolver func(ctx context.Context) (string, error)

// Fixed is the floor's resolver: one of the addresses it was given, at
// random, as movie spreads its calls.
func Fixed(addrs ...string) Resolver {
	return func(context.Context) (string, error) { return addrs[rand.IntN(len(addrs))], nil }
}

// ConsulLookup is the per-request lookup's resolver: it asks Consul for the
// passing instances of service on every call and picks one at random. It
// returns errNoInstance when there is none.
func ConsulLookup(client *consul.Client, service string) Resolver {
	return func(ctx context.Context) (string, error) {
		entries, _, err := client.Health().Service(service, "", true, (&consul.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return "", fmt.Errorf("look up %s: %w", service, err)
		}
		if len(entries) == 0 {
			return "", fmt.Errorf("%s: %w", service, errNoInstance)
		}
		s := entries[rand.IntN(len(entries))].Service
		return net.JoinHostPort(s.Address, fmt.Sprint(s.Port)), nil
	}
}

// Gateway is the reference gateway: GET /movie?id=ID calls the metadata and
// rating backends concurrently and answers what movie answers, a
// movie.Details. It has none of movie's discovery, balancing, retries,
// breakers, metrics or request IDs; errors are a bare 502.
type Gateway struct {
	MetadataTransport, RatingTransport http.RoundTripper
	Metadata, Rating                   Resolver
}

// NewTransport returns an HTTP transport of the reference gateway, one per
// backend. It has what makes movie's upstream calls cheaper (a pool per
// backend, as deep as the load, no gzip; calls made on the transport, with
// no http.Client around it), so that the floor stays a floor. It has no
// timeout at all: the least work.
func NewTransport() http.RoundTripper {
	return &http.Transport{
		Proxy:               nil,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
}

func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.URL.Query().Get("id")
	var (
		agg    rating.Aggregate
		ratErr error
		done   = make(chan struct{})
	)
	go func() {
		defer close(done)
		ratErr = get(ctx, g.RatingTransport, g.Rating, "/rating?type=movie&id="+url.QueryEscape(id), &agg)
	}()
	var md metadata.Metadata
	mdErr := get(ctx, g.MetadataTransport, g.Metadata, "/metadata?id="+url.QueryEscape(id), &md)
	<-done
	switch {
	case errors.Is(mdErr, errNotFound):
		http.Error(w, "not found", http.StatusNotFound)
		return
	case mdErr != nil:
		http.Error(w, mdErr.Error(), http.StatusBadGateway)
		return
	case ratErr != nil && !errors.Is(ratErr, errNotFound):
		http.Error(w, ratErr.Error(), http.StatusBadGateway)
		return
	}
	d := movie.Details{Metadata: md}
	if ratErr == nil {
		d.Rating = &agg.Average
	}
	writeJSON(w, d)
}

// get calls one backend instance and decodes its JSON answer into v.
func get(ctx context.Context, rt http.RoundTripper, resolve Resolver, path string, v any) error {
	addr, err := resolve(ctx)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return err
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	switch {
	case err != nil:
		return err
	case resp.StatusCode == http.StatusNotFound:
		return errNotFound
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("%s answered %s", addr, resp.Status)
	}
	return json.Unmarshal(body, v)
}

// MetadataBackend is the floor's metadata service: the seed catalogue in a
// map, GET /metadata?id=ID.
func MetadataBackend() http.Handler {
	byID := make(map[string]metadata.Metadata, len(metadata.Seed))
	for _, m := range metadata.Seed {
		byID[m.ID] = m
	}
	return backend(func(q url.Values) (any, bool) {
		m, ok := byID[q.Get("id")]
		return m, ok
	})
}

// RatingBackend is the floor's rating service: the seed ratings' averages
// in a map, GET /rating?type=movie&id=ID.
func RatingBackend() http.Handler {
	repo := rating.NewMemory(rating.Seed)
	byID := map[string]rating.Aggregate{}
	for _, s := range rating.Seed {
		agg, err := repo.Aggregate(context.Background(), s.Key)
		if err == nil {
			byID[s.Key.ID] = agg
		}
	}
	return backend(func(q url.Values) (any, bool) {
		if q.Get("type") != string(rating.RecordTypeMovie) {
			return nil, false
		}
		a, ok := byID[q.Get("id")]
		return a, ok
	})
}

func backend(lookup func(url.Values) (any, bool)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, ok := lookup(r.URL.Query())
		if !ok {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		writeJSON(w, v)
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(v)
}
