package backoff_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"movieexample.com/pkg/backoff"
)

func TestJitter(t *testing.T) {
	tests := []struct {
		name       string
		d          time.Duration
		wantMin    time.Duration // inclusive
		wantBelow  time.Duration // exclusive; 0 means exactly wantMin
		wantSpread bool
	}{
		{name: "negative", d: -time.Second},
		{name: "zero", d: 0},
		{name: "one nanosecond", d: 1, wantMin: 0, wantBelow: 1},
		{name: "a millisecond", d: time.Millisecond, wantMin: time.Millisecond / 2, wantBelow: 3 * time.Millisecond / 2, wantSpread: true},
		{name: "a second", d: time.Second, wantMin: time.Second / 2, wantBelow: 3 * time.Second / 2, wantSpread: true},
		{name: "an hour", d: time.Hour, wantMin: time.Hour / 2, wantBelow: 3 * time.Hour / 2, wantSpread: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen := map[time.Duration]bool{}
			for range 1000 {
				got := backoff.Jitter(tt.d)
				switch {
				case tt.wantBelow == 0 && got != tt.wantMin:
					t.Fatalf("Jitter(%s) = %s, want %s", tt.d, got, tt.wantMin)
				case tt.wantBelow != 0 && (got < tt.wantMin || got >= tt.wantBelow):
					t.Fatalf("Jitter(%s) = %s, want in [%s, %s)", tt.d, got, tt.wantMin, tt.wantBelow)
				}
				seen[got] = true
			}
			if tt.wantSpread && len(seen) < 2 {
				t.Errorf("Jitter(%s) returned the same value 1000 times; want it spread", tt.d)
			}
		})
	}
}

func TestSleep(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	tests := []struct {
		name string
		ctx  context.Context
		d    time.Duration
		want error
	}{
		{"canceled before", canceled, time.Hour, context.Canceled},
		{"deadline passes first", expired, time.Hour, context.DeadlineExceeded},
		{"sleeps its time", context.Background(), time.Millisecond, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() { done <- backoff.Sleep(tt.ctx, tt.d) }()
			select {
			case got := <-done:
				if !errors.Is(got, tt.want) || (got == nil) != (tt.want == nil) {
					t.Errorf("Sleep(%s) = %v, want %v", tt.d, got, tt.want)
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("Sleep(%s) still sleeping after 30s; want it to end with its context", tt.d)
			}
		})
	}
}
