package gateway

import (
	"math"
	"sync"
	"time"
)

// ewmaDecay is how fast an instance's latency estimate forgets: an
// observation's weight falls by e every ewmaDecay, whatever the call rate,
// as in Finagle's and linkerd's peak EWMA (10s there too). Shorter chases
// noise; longer keeps a recovered instance avoided for longer.
const ewmaDecay = 10 * time.Second

// peakEWMA is an instance's latency as P2CEWMA sees it: an exponentially
// weighted moving average of its attempts' durations that jumps at once to
// a longer one (the "peak"), so a slowdown is seen on its first call and a
// recovery over about ewmaDecay. Reads decay it toward zero too, so an
// instance avoided for a while is tried again.
type peakEWMA struct {
	mu    sync.Mutex
	ns    float64 // the estimate, in nanoseconds
	stamp time.Time
}

// observe adds an attempt of duration d that ended at now.
func (e *peakEWMA) observe(d time.Duration, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x := float64(d)
	if x > e.ns {
		e.ns = x
	} else {
		// Clamped: a concurrent observe may have stamped a later now.
		w := math.Exp(-float64(max(0, now.Sub(e.stamp))) / float64(ewmaDecay))
		e.ns = e.ns*w + x*(1-w)
	}
	e.stamp = now
}

// estimate returns the estimate at now.
func (e *peakEWMA) estimate(now time.Time) float64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ns * math.Exp(-float64(max(0, now.Sub(e.stamp)))/float64(ewmaDecay))
}
