package discovery

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Memory is an in-process Registry for unit tests of its callers. It mimics
// Consul where a caller can tell the difference: an instance whose TTL has
// lapsed is not returned, and a service with no live instance is
// ErrNoInstances rather than an empty list.
type Memory struct {
	now func() time.Time

	mu        sync.Mutex
	instances map[string]memoryEntry // by instance ID
}

type memoryEntry struct {
	inst     Instance
	ttl      time.Duration
	deadline time.Time
}

// NewMemory returns an empty in-memory registry using the wall clock.
func NewMemory() *Memory {
	return NewMemoryWithClock(time.Now)
}

// NewMemoryWithClock returns an empty in-memory registry that reads time from
// now, so tests can expire TTLs without sleeping.
func NewMemoryWithClock(now func() time.Time) *Memory {
	return &Memory{now: now, instances: make(map[string]memoryEntry)}
}

// Register implements Registry.
func (m *Memory) Register(_ context.Context, inst Instance, ttl, _ time.Duration) error {
	if err := validate(inst, ttl); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.instances[inst.ID] = memoryEntry{inst: inst, ttl: ttl, deadline: m.now().Add(ttl)}
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
	e, ok := m.instances[instanceID]
	if !ok {
		return ErrNotRegistered
	}
	e.deadline = m.now().Add(e.ttl)
	m.instances[instanceID] = e
	return nil
}

// Instances implements Registry. Instances are sorted by ID so results are
// stable across calls.
func (m *Memory) Instances(_ context.Context, service string) ([]Instance, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	var out []Instance
	for _, e := range m.instances {
		if e.inst.Service == service && now.Before(e.deadline) {
			out = append(out, e.inst)
		}
	}
	if len(out) == 0 {
		return nil, ErrNoInstances
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Forget drops every instance, as a restarted Consul dev agent does, so tests
// can exercise re-registration.
func (m *Memory) Forget() {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.instances)
}
