// Package gateway holds the clients movie uses to reach the metadata and
// rating services: instances are discovered through Consul with go-kit's
// blocking-query Instancer (never a Consul call on the request path), each
// call goes to a random live instance, and a failed attempt is retried on
// another one within a per-attempt timeout, the caller's deadline and a retry
// budget. An instance that keeps failing is ejected by its circuit breaker
// long before Consul's TTL notices.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/go-kit/kit/sd"
	consul "github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"

	"movieexample.com/metadata"
	"movieexample.com/pkg/discovery"
	"movieexample.com/rating"
)

// Errors returned by the clients. Callers convert them at their boundary.
var (
	// ErrNotFound means the upstream answered 404 for the requested ID.
	ErrNotFound = errors.New("not found upstream")
	// ErrUnavailable means no instance answered: none is discovered, every
	// attempt failed, or the deadline passed.
	ErrUnavailable = errors.New("upstream unavailable")
	// ErrBadResponse means an instance answered with something the gateway
	// cannot trust: a malformed or oversized body, or an unexpected status.
	ErrBadResponse = errors.New("bad upstream response")
)

// Config tunes the clients. DefaultConfig's values are what the README's
// resilience figures were measured with.
type Config struct {
	// AttemptTimeout bounds one attempt on one instance.
	AttemptTimeout time.Duration
	// MaxAttempts bounds attempts per call, the first one included.
	MaxAttempts int
	// Backoff is the base of the jittered pause before a retry.
	Backoff time.Duration
	// RetryRatio is the retry budget: retries may add at most this fraction
	// of calls (plus MinRetriesPerSecond), so a sick upstream is not
	// hammered by retries on top of its load.
	RetryRatio          float64
	MinRetriesPerSecond float64
	// BreakerFailures consecutive failures eject an instance for
	// BreakerCooldown, after which one trial call decides; 0 disables it.
	BreakerFailures int
	BreakerCooldown time.Duration
	// MaxResponseBytes caps how much of an upstream body is read.
	MaxResponseBytes int64
	// ReregisterGrace is how long after Consul comes back from an outage
	// its answers may add instances but not remove them: a Consul that
	// lost its state lists nothing until the instances re-register at
	// their next heartbeat. Passed to ConsulInstancers.
	ReregisterGrace time.Duration
}

// DefaultConfig returns the tuned defaults.
func DefaultConfig() Config {
	return Config{
		AttemptTimeout:      500 * time.Millisecond,
		MaxAttempts:         3,
		Backoff:             5 * time.Millisecond,
		RetryRatio:          0.2,
		MinRetriesPerSecond: 10,
		BreakerFailures:     5,
		// Short: every instance of an upstream ejected at once by one
		// stall of the host stays ejected this long after it ends, while
		// a trial call to an instance that is really gone costs one
		// refused connection (or one attempt timeout) per cooldown.
		BreakerCooldown:  time.Second,
		MaxResponseBytes: 64 << 10,
		// One default TTL: an instance that has not re-registered by
		// then would have turned critical anyway.
		ReregisterGrace: 5 * time.Second,
	}
}

// InstancerFunc returns the source of live instances of a service.
type InstancerFunc func(service string) (sd.Instancer, error)

// ConsulInstancers returns an InstancerFunc that watches passing instances in
// Consul with blocking queries until ctx ends. For grace after Consul comes
// back from an outage or a restart, the instances it lists are added to the
// last known ones rather than replacing them, so that an agent that lost its
// state does not empty the gateway's view before the instances re-register
// (see consulInstancer); 0 trusts Consul's first answer.
func ConsulInstancers(ctx context.Context, client *consul.Client, grace time.Duration, logger *slog.Logger) InstancerFunc {
	return func(service string) (sd.Instancer, error) {
		return newConsulInstancer(ctx, client, service, grace, logger.With("target", service)), nil
	}
}

// aclError turns Consul's two ways of refusing a read into
// discovery.ErrPermissionDenied: a 403 (an unknown token) and, since Consul
// answers a token lacking service:read or node:read with a 200 and every
// entry filtered out, an empty answer flagged as filtered by ACLs.
func aclError(service string, entries []*consul.ServiceEntry, meta *consul.QueryMeta, err error) error {
	var se consul.StatusError
	switch {
	case errors.As(err, &se) && se.Code == http.StatusForbidden:
		return fmt.Errorf("%w: reading %s instances: %s", discovery.ErrPermissionDenied, service, strings.TrimSpace(se.Body))
	case err == nil && len(entries) == 0 && meta != nil && meta.ResultsFilteredByACLs:
		return fmt.Errorf("%w: Consul hid every %s instance from this token, which needs service:read on %q and node:read",
			discovery.ErrPermissionDenied, service, service)
	}
	return err
}

// Gateway reaches the metadata and rating services.
type Gateway struct {
	metadata *upstream
	rating   *upstream
}

// New returns a Gateway that finds instances through instancers. Call Start
// before the first call and Stop when done.
func New(cfg Config, instancers InstancerFunc, logger *slog.Logger, reg prometheus.Registerer) *Gateway {
	m := newMetrics(reg)
	// A transport, and so a connection pool, per upstream: every call takes
	// the pool's lock twice, and one pool for both upstreams was the most
	// contended lock in movie under load.
	return &Gateway{
		// Movie answers without a rating but not without metadata: only
		// rating fails fast when every instance is ejected.
		metadata: newUpstream("metadata", cfg, false, instancers, metadataFactory(newTransport(), cfg), m, logger),
		rating:   newUpstream("rating", cfg, true, instancers, ratingFactory(newTransport(), cfg), m, logger),
	}
}

// Start begins watching the upstreams' instances.
func (g *Gateway) Start() error {
	if err := g.metadata.start(); err != nil {
		return err
	}
	if err := g.rating.start(); err != nil {
		g.metadata.stop()
		return err
	}
	return nil
}

// Stop stops watching and waits for the watchers to end.
func (g *Gateway) Stop() {
	g.metadata.stop()
	g.rating.stop()
}

// Ready returns an error naming each upstream with no discovered instance,
// with the last discovery error if there is one (wrapping
// discovery.ErrPermissionDenied when Consul's ACLs refuse the lookup).
func (g *Gateway) Ready() error {
	var errs []error
	for _, u := range []*upstream{g.metadata, g.rating} {
		if u.instances.Load() == 0 {
			if err := u.discoveryErr(); err != nil {
				errs = append(errs, fmt.Errorf("no %s instance discovered: %w", u.name, err))
				continue
			}
			errs = append(errs, fmt.Errorf("no %s instance discovered", u.name))
		}
	}
	return errors.Join(errs...)
}

// Metadata returns the metadata of movie id: ErrNotFound, ErrUnavailable or
// ErrBadResponse on failure. When every metadata instance is ejected by its
// breaker, they are tried anyway: movie has no answer without metadata.
func (g *Gateway) Metadata(ctx context.Context, id string) (metadata.Metadata, error) {
	resp, err := g.metadata.call(ctx, id)
	if err != nil {
		return metadata.Metadata{}, err
	}
	return resp.(metadata.Metadata), nil
}

// Rating returns the average rating of movie id: ErrNotFound when it has no
// rating yet, ErrUnavailable or ErrBadResponse on failure. When every rating
// instance is ejected by its breaker, it returns ErrUnavailable at once, so
// that movie answers without the rating instead of waiting on each call.
func (g *Gateway) Rating(ctx context.Context, id string) (rating.Aggregate, error) {
	resp, err := g.rating.call(ctx, id)
	if err != nil {
		return rating.Aggregate{}, err
	}
	return resp.(rating.Aggregate), nil
}

// newTransport returns the transport of an upstream's calls. The
// per-attempt context bounds every call, so it needs no timer of its own for
// the response; the pool keeps enough idle connections per instance for the
// fan-out (the default keeps 2, which under load means a new TCP connection
// for most calls); and the answers, a few hundred bytes of JSON inside the
// cluster, are not worth asking for gzip.
func newTransport() *http.Transport {
	return &http.Transport{
		Proxy:               nil, // upstreams are discovered addresses, never reached through a proxy
		DialContext:         (&net.Dialer{Timeout: time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
}
