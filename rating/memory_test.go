package rating

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

func TestMemoryConcurrentPuts(t *testing.T) {
	m := NewMemory(nil)
	key := Key{Type: RecordTypeMovie, ID: "1"}
	var wg sync.WaitGroup
	for u := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := MinValue; v <= MaxValue; v++ {
				_ = m.Put(context.Background(), key, fmt.Sprint("user", u), v)
				_, _ = m.Aggregate(context.Background(), key)
			}
		}()
	}
	wg.Wait()
	got, err := m.Aggregate(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if got.Count != 50 || got.Average != MaxValue {
		t.Errorf("Aggregate = %+v, want 50 ratings averaging %d", got, MaxValue)
	}
}
