package metadata

import (
	"context"
	"sync"
)

// Memory is a Repository held in the process's memory, safe for concurrent
// use. Writes stay in the instance that took them.
type Memory struct {
	mu   sync.RWMutex
	data map[string]Metadata
}

// NewMemory returns a repository holding seed.
func NewMemory(seed []Metadata) *Memory {
	m := &Memory{data: make(map[string]Metadata, len(seed))}
	for _, md := range seed {
		m.data[md.ID] = md
	}
	return m
}

// Get implements Repository.
func (m *Memory) Get(_ context.Context, id string) (Metadata, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	md, ok := m.data[id]
	if !ok {
		return Metadata{}, ErrNotFound
	}
	return md, nil
}

// Put implements Repository.
func (m *Memory) Put(_ context.Context, md Metadata) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.data[md.ID] = md
	return nil
}
