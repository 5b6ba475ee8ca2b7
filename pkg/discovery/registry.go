// Package discovery is everything movieapp does with Consul. An instance
// registers with Register, which keeps the registration alive with TTL
// heartbeats until Close deregisters it; Advertise says which address to
// register. A caller finds the passing instances of a service with
// NewInstancer, a go-kit sd.Instancer fed by blocking queries.
package discovery

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"movieexample.com/pkg/identity"
)

// Errors returned by Registry implementations and the instance lifecycle.
var (
	// ErrNotRegistered means the registry does not know the instance: it was
	// never registered, it was reaped, or the registry lost its state (a
	// Consul dev agent keeps none across a restart).
	ErrNotRegistered = errors.New("instance not registered")

	// ErrPermissionDenied means the registry refused the call for lack of
	// rights (a Consul ACL token without service:write or service:read).
	// Retrying does not help; the operator must fix the token.
	ErrPermissionDenied = errors.New("permission denied by the registry")

	// ErrInvalidInstance means an instance cannot be registered as given.
	ErrInvalidInstance = errors.New("invalid instance")
)

// Instance is one running process of a service, as callers reach it.
type Instance struct {
	ID      string // "<service>-<uuid v4>", new for every process start
	Service string // service name callers look up, e.g. "rating"
	Host    string // an IP address callers can reach
	Port    int

	// Weight is the instance's share of its callers' calls relative to
	// the other instances' (Consul's Weights.Passing; 0 means 1).
	Weight int
	// Tags and Meta are registered as given, for routing (a canary tag)
	// and for whoever reads the catalog (Prometheus labels a version from
	// Meta). Meta may not set identity.MetaKey: that is the instance's.
	Tags []string
	Meta map[string]string
}

// Addr returns the instance's host:port.
func (i Instance) Addr() string {
	return fmt.Sprintf("%s:%d", i.Host, i.Port)
}

// NewInstanceID returns a fresh "<service>-<uuid v4>" ID. A new ID per process
// start means a restarted instance never inherits the health history of the
// process it replaces.
func NewInstanceID(service string) string {
	return service + "-" + uuid.NewString()
}

// Registry is where instances announce themselves. Consul is the one
// implementation; the lifecycle's tests use an in-memory one.
type Registry interface {
	// Register adds or replaces inst with a TTL health check that starts
	// passing. An instance whose TTL lapses turns critical; one critical for
	// deregisterAfter is removed. It returns ErrPermissionDenied or
	// ErrInvalidInstance when retrying cannot help.
	Register(ctx context.Context, inst Instance, ttl, deregisterAfter time.Duration) error

	// Deregister removes the instance. Removing an unknown instance is not
	// an error: shutdown must be idempotent.
	Deregister(ctx context.Context, instanceID string) error

	// ReportHealthy renews the instance's TTL. It returns ErrNotRegistered if
	// the registry no longer knows the instance.
	ReportHealthy(ctx context.Context, instanceID string) error
}

// validate rejects instances that callers could never reach.
func validate(inst Instance, ttl time.Duration) error {
	switch {
	case inst.ID == "" || inst.Service == "":
		return fmt.Errorf("%w: empty ID or service name", ErrInvalidInstance)
	case inst.Host == "" || inst.Host == "localhost" || inst.Host == "0.0.0.0" || inst.Host == "::":
		return fmt.Errorf("%w: host %q is not reachable by other processes", ErrInvalidInstance, inst.Host)
	case inst.Port <= 0 || inst.Port > 65535:
		return fmt.Errorf("%w: port %d", ErrInvalidInstance, inst.Port)
	case ttl <= 0:
		return fmt.Errorf("%w: TTL must be positive", ErrInvalidInstance)
	case inst.Weight < 0:
		return fmt.Errorf("%w: weight %d", ErrInvalidInstance, inst.Weight)
	}
	if _, ok := inst.Meta[identity.MetaKey]; ok {
		return fmt.Errorf("%w: metadata key %s is the instance's identity, not a setting", ErrInvalidInstance, identity.MetaKey)
	}
	return nil
}
