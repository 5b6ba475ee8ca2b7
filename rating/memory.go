package rating

import (
	"context"
	"sync"
)

// Memory is a Repository held in the process's memory, safe for concurrent
// use. Writes stay in the instance that took them.
type Memory struct {
	mu      sync.RWMutex
	ratings map[Key]map[string]int // key -> user -> value
}

// NewMemory returns a repository holding seed.
func NewMemory(seed []Seeded) *Memory {
	m := &Memory{ratings: make(map[Key]map[string]int)}
	for _, s := range seed {
		_ = m.Put(context.Background(), s.Key, s.UserID, s.Value)
	}
	return m
}

// Put implements Repository.
func (m *Memory) Put(_ context.Context, key Key, userID string, value int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	users := m.ratings[key]
	if users == nil {
		users = make(map[string]int)
		m.ratings[key] = users
	}
	users[userID] = value
	return nil
}

// Aggregate implements Repository.
func (m *Memory) Aggregate(_ context.Context, key Key) (Aggregate, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	users := m.ratings[key]
	if len(users) == 0 {
		return Aggregate{}, ErrNotFound
	}
	sum := 0
	for _, v := range users {
		sum += v
	}
	return Aggregate{ID: key.ID, Type: key.Type, Average: float64(sum) / float64(len(users)), Count: len(users)}, nil
}
