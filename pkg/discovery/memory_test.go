package discovery

import (
	"context"
	"sync"
	"time"
)

// Memory is an in-process Registry for the unit tests of the instance
// lifecycle. It mimics Consul where the lifecycle can tell the difference:
// a heartbeat for an instance it does not know (never registered,
// deregistered, or dropped by Forget) is ErrNotRegistered, and it refuses
// the instances Consul's Register refuses.
type Memory struct {
	mu        sync.Mutex
	instances map[string]Instance // by instance ID
}

// NewMemory returns an empty in-memory registry.
func NewMemory() *Memory {
	return &Memory{instances: make(map[string]Instance)}
}

// Register implements Registry.
func (m *Memory) Register(_ context.Context, inst Instance, ttl, _ time.Duration) error {
	if err := validate(inst, ttl); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.instances[inst.ID] = inst
	return nil
}

// Deregister implements Registry.
func (m *Memory) Deregister(_ context.Context, instanceID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.instances, instanceID)
	return nil
}

// ReportHealthy implements Registry.
func (m *Memory) ReportHealthy(_ context.Context, instanceID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.instances[instanceID]; !ok {
		return ErrNotRegistered
	}
	return nil
}

// listed reports whether an instance of service is registered.
func (m *Memory) listed(service string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, inst := range m.instances {
		if inst.Service == service {
			return true
		}
	}
	return false
}

// Forget drops every instance, as a restarted Consul dev agent does, so tests
// can exercise re-registration.
func (m *Memory) Forget() {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.instances)
}
