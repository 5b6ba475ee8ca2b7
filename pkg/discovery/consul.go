package discovery

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	consul "github.com/hashicorp/consul/api"

	"movieexample.com/pkg/identity"
)

// NewClient returns the consul/api client a process uses for everything it
// asks Consul, for the agent at addr (host:port). Starting from
// consul.DefaultConfig keeps CONSUL_HTTP_TOKEN, CONSUL_HTTP_TOKEN_FILE,
// CONSUL_CACERT, CONSUL_CLIENT_CERT and the other standard variables
// working.
func NewClient(addr string) (*consul.Client, error) {
	cc := consul.DefaultConfig()
	cc.Address = addr
	client, err := consul.NewClient(cc)
	if err != nil {
		return nil, fmt.Errorf("consul client for %s: %w", addr, err)
	}
	return client, nil
}

// AddrEnv is the environment variable consul/api reads the agent's
// address from, and so the one movieapp's -consul-addr falls back to.
const AddrEnv = consul.HTTPAddrEnvName

// Consul is a Registry backed by a Consul agent's HTTP API.
type Consul struct {
	client *consul.Client
}

// NewConsul returns a Registry that talks to Consul through client. Build the
// client from consul.DefaultConfig so that CONSUL_HTTP_TOKEN(_FILE),
// CONSUL_CACERT and the other standard variables keep working.
func NewConsul(client *consul.Client) *Consul {
	return &Consul{client: client}
}

// checkID names the TTL check of an instance. Naming it ourselves, rather than
// relying on Consul's "service:<id>" default, keeps heartbeat and
// registration in agreement whatever the Consul version.
func checkID(instanceID string) string { return "service:" + instanceID }

// Register implements Registry. The entry carries the instance's identity in
// its metadata (identity.MetaKey), without which no Instancer lists it.
func (c *Consul) Register(ctx context.Context, inst Instance, ttl, deregisterAfter time.Duration) error {
	if err := validate(inst, ttl); err != nil {
		return err
	}
	meta := maps.Clone(inst.Meta)
	if meta == nil {
		meta = map[string]string{}
	}
	meta[identity.MetaKey] = identity.Of(inst.Service, inst.ID)
	reg := &consul.AgentServiceRegistration{
		ID:      inst.ID,
		Name:    inst.Service,
		Address: inst.Host,
		Port:    inst.Port,
		Tags:    inst.Tags,
		Meta:    meta,
		// Warning 1, Consul's default: movie lists passing instances
		// only, so it never uses it.
		Weights: &consul.AgentWeights{Passing: max(inst.Weight, 1), Warning: 1},
		Check: &consul.AgentServiceCheck{
			CheckID: checkID(inst.ID),
			Name:    inst.Service + " TTL heartbeat",
			TTL:     ttl.String(),
			// Passing from the start: the instance registers only once it
			// is listening, so making callers wait a whole heartbeat for it
			// would only delay the first request it could already serve.
			Status:                         consul.HealthPassing,
			DeregisterCriticalServiceAfter: deregisterAfter.String(),
		},
	}
	opts := consul.ServiceRegisterOpts{}.WithContext(ctx)
	if err := c.client.Agent().ServiceRegisterOpts(reg, opts); err != nil {
		return fmt.Errorf("register %s: %w", inst.ID, consulError(err))
	}
	return nil
}

// Deregister implements Registry.
func (c *Consul) Deregister(ctx context.Context, instanceID string) error {
	q := (&consul.QueryOptions{}).WithContext(ctx)
	err := c.client.Agent().ServiceDeregisterOpts(instanceID, q)
	if err = consulError(err); err != nil && !errors.Is(err, ErrNotRegistered) {
		return fmt.Errorf("deregister %s: %w", instanceID, err)
	}
	return nil
}

// ReportHealthy implements Registry.
func (c *Consul) ReportHealthy(ctx context.Context, instanceID string) error {
	q := (&consul.QueryOptions{}).WithContext(ctx)
	err := c.client.Agent().UpdateTTLOpts(checkID(instanceID), "", consul.HealthPassing, q)
	if err != nil {
		return fmt.Errorf("heartbeat %s: %w", instanceID, consulError(err))
	}
	return nil
}

// entryAddr returns the host:port to reach the instance of e at: the
// service's own address, or its node's when it registered none.
func entryAddr(e *consul.ServiceEntry) string {
	host := e.Service.Address
	if host == "" {
		host = e.Node.Address
	}
	return net.JoinHostPort(host, strconv.Itoa(e.Service.Port))
}

// permissionError converts Consul's 403 into ErrPermissionDenied, so
// callers never match on consul/api types.
func permissionError(err error) error {
	if se, ok := errors.AsType[consul.StatusError](err); ok && se.Code == http.StatusForbidden {
		return fmt.Errorf("%w: %s", ErrPermissionDenied, strings.TrimSpace(se.Body))
	}
	return err
}

// consulError converts the agent's answers to a registration call into this
// package's errors: a 403 as permissionError does, and an instance or check
// the agent does not know into ErrNotRegistered.
func consulError(err error) error {
	se, ok := errors.AsType[consul.StatusError](err)
	if !ok {
		return err
	}
	switch {
	case se.Code == http.StatusForbidden:
		return permissionError(err)
	case se.Code == http.StatusNotFound,
		// Older agents answer a TTL update for a check they do not know
		// with a 500 rather than a 404.
		strings.Contains(se.Body, "does not have associated TTL"),
		strings.Contains(se.Body, "Unknown check"),
		strings.Contains(se.Body, "Unknown service"):
		return fmt.Errorf("%w: %s", ErrNotRegistered, strings.TrimSpace(se.Body))
	}
	return err
}
