package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/go-kit/kit/sd"
	consul "github.com/hashicorp/consul/api"

	"movieexample.com/pkg/backoff"
)

// Discovery timings. They are constants rather than Config fields because
// they follow from Consul's behaviour, not from a deployment's taste.
const (
	// queryWait bounds one blocking query. Consul's default is five
	// minutes; a shorter wait, with a client deadline a little past it,
	// also finds a connection that died without a reset (a vanished
	// host) within about a minute.
	queryWait = time.Minute
	// minQueryBackoff and maxQueryBackoff bound the pause after a failed
	// query. go-kit's Instancer doubles its pause up to a minute, so after
	// a 30s Consul outage it could stay blind for another half minute
	// while instances come and go; a one-second cap costs an unreachable
	// local agent one query per second per upstream.
	minQueryBackoff = 50 * time.Millisecond
	maxQueryBackoff = time.Second
	// DefaultGrace is the default grace of NewInstancer: one default TTL,
	// since an instance that has not re-registered by then would have
	// turned critical anyway.
	DefaultGrace = 5 * time.Second
	// firstQueryTimeout bounds the query made before the instancer is
	// returned, so a hung agent cannot hold up movie's start.
	firstQueryTimeout = 5 * time.Second
)

// Instancer is an sd.Instancer over the passing instances of one service in
// Consul, watched with blocking queries. It replaces go-kit's
// sd/consul Instancer, which loses requests when Consul itself goes away:
//
//   - A Consul dev agent (or a cluster whose data was lost) comes back empty.
//     The first answer after it returns lists no instance, because the
//     instances re-register only at their next heartbeat (a third of the TTL
//     later). go-kit publishes that empty set and every call fails until
//     they do. Here, for the grace given to NewInstancer after Consul answers again, an
//     answer may add instances but not remove them: the last known ones,
//     which kept serving all along, stay in use while they re-register.
//   - go-kit backs off up to a minute between failed queries; here the
//     pause is capped at maxQueryBackoff, so the view catches up within a
//     second of Consul's return.
//   - After a failure the next query starts from index 0 instead of the
//     last index: a restarted agent's indexes start again from low
//     numbers, and a blocking query on an index it has not reached would
//     wait its full wait time before answering.
//
// While Consul cannot be reached, the last known instances stay in use
// (the Endpointer keeps them on an error event), and the per-instance
// circuit breakers and retries deal with any that died meanwhile.
type Instancer struct {
	health  *consul.Health
	service string
	grace   time.Duration
	log     *slog.Logger

	mu    sync.Mutex
	state sd.Event // last published, an error included
	known []string // last published instances, kept through errors
	subs  map[chan<- sd.Event]struct{}

	cancel context.CancelFunc
	done   chan struct{}
}

// NewInstancer returns the Instancer of service's passing instances. It
// makes one query (bounded by firstQueryTimeout) so that the instancer holds
// the current instances when it is returned, then watches for changes until
// ctx ends or Stop is called. For grace after Consul comes back from an
// outage or a restart, the instances it lists are added to the last known
// ones rather than replacing them (see Instancer); 0 trusts Consul's first
// answer.
func NewInstancer(ctx context.Context, client *consul.Client, service string, grace time.Duration, logger *slog.Logger) *Instancer {
	ctx, cancel := context.WithCancel(ctx)
	w := &Instancer{
		health:  client.Health(),
		service: service,
		grace:   grace,
		log:     logger.With("target", service),
		subs:    map[chan<- sd.Event]struct{}{},
		cancel:  cancel,
		done:    make(chan struct{}),
	}
	qctx, qcancel := context.WithTimeout(ctx, firstQueryTimeout)
	instances, index, err := w.query(qctx, 0, 0)
	qcancel()
	if err != nil {
		w.log.Warn("service discovery failing; will keep trying", "err", err)
		w.state = sd.Event{Err: err}
	} else {
		w.state = sd.Event{Instances: instances}
		w.known = instances
	}
	go w.loop(ctx, index, err != nil)
	return w
}

func (w *Instancer) loop(ctx context.Context, index uint64, failing bool) {
	defer close(w.done)
	var (
		delay        = minQueryBackoff
		failedAt     = time.Now()
		recoverUntil time.Time // until then, answers only add instances
	)
	for {
		wait := queryWait
		if !recoverUntil.IsZero() {
			// Wake up when the grace ends even if Consul has nothing
			// new, so an instance that never came back is dropped then.
			wait = max(time.Until(recoverUntil), 10*time.Millisecond)
		}
		instances, next, err := w.query(ctx, index, wait)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if !failing {
				failing, failedAt = true, time.Now()
				w.log.Warn("service discovery failing; keeping the last known instances", "err", err)
				w.publish(sd.Event{Err: err})
			}
			index = 0
			if backoff.Sleep(ctx, backoff.Jitter(delay)) != nil {
				return
			}
			delay = min(2*delay, maxQueryBackoff)
			continue
		case next < index:
			// Consul's index went backwards: the agent lost its state
			// between two queries without us seeing it down.
			w.log.Warn("Consul index went backwards; treating it as a restarted agent", "index", next, "previous", index)
			index, recoverUntil = 0, time.Now().Add(w.grace)
			continue
		}
		delay = minQueryBackoff
		if failing {
			failing = false
			recoverUntil = time.Now().Add(w.grace)
			w.log.Info("service discovery recovered", "down_for", time.Since(failedAt).Round(time.Millisecond).String(), "instances", instances)
		}
		index = max(next, 1) // 0 would turn the next query into a non-blocking one
		if !recoverUntil.IsZero() {
			if time.Now().Before(recoverUntil) {
				instances = w.withLastKnown(instances)
			} else {
				recoverUntil = time.Time{}
			}
		}
		w.publish(sd.Event{Instances: instances})
	}
}

// query returns the addresses of the passing instances and Consul's index,
// waiting up to wait for a change past index (no wait if index is 0).
func (w *Instancer) query(ctx context.Context, index uint64, wait time.Duration) ([]string, uint64, error) {
	// Consul adds up to wait/16 of jitter to the wait; past that and a few
	// seconds more, the connection is dead, not waiting.
	ctx, cancel := context.WithTimeout(ctx, wait+wait/16+5*time.Second)
	defer cancel()
	q := (&consul.QueryOptions{WaitIndex: index, WaitTime: wait}).WithContext(ctx)
	entries, meta, err := w.health.Service(w.service, "", true, q)
	if err != nil {
		return nil, 0, fmt.Errorf("watch %s instances: %w", w.service, permissionError(err))
	}
	if len(entries) == 0 && meta.ResultsFilteredByACLs {
		// Consul answers a token lacking service:read or node:read with a
		// 200 and every entry filtered out, not with a 403.
		return nil, 0, fmt.Errorf("watch %s instances: %w: Consul hid every %s instance from this token, which needs service:read on %q and node:read",
			w.service, ErrPermissionDenied, w.service, w.service)
	}
	instances := make([]string, 0, len(entries))
	for _, e := range entries {
		instances = append(instances, entryAddr(e))
	}
	slices.Sort(instances)
	return instances, meta.LastIndex, nil
}

// withLastKnown returns instances plus the last published ones.
func (w *Instancer) withLastKnown(instances []string) []string {
	w.mu.Lock()
	known := w.known
	w.mu.Unlock()
	merged := slices.Concat(instances, known)
	slices.Sort(merged)
	return slices.Compact(merged)
}

// publish sends ev to every subscriber unless it repeats the last event.
// Sending under the lock, as go-kit's own instancers do, keeps subscribers
// from seeing events out of order; subscribers must keep receiving until
// they deregister.
func (w *Instancer) publish(ev sd.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if reflect.DeepEqual(w.state, ev) {
		return
	}
	w.state = ev
	if ev.Err == nil {
		w.known = ev.Instances
	}
	for ch := range w.subs {
		ch <- copyEvent(ev)
	}
}

// Register implements sd.Instancer: ch receives the current state at once,
// then every change.
func (w *Instancer) Register(ch chan<- sd.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.subs[ch] = struct{}{}
	ch <- copyEvent(w.state)
}

// Deregister implements sd.Instancer.
func (w *Instancer) Deregister(ch chan<- sd.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.subs, ch)
}

// Stop implements sd.Instancer: it ends the watch, the query in flight
// included, and waits for it.
func (w *Instancer) Stop() {
	w.cancel()
	<-w.done
}

// copyEvent gives each subscriber its own slice: go-kit's endpoint cache
// sorts the one it receives.
func copyEvent(ev sd.Event) sd.Event {
	ev.Instances = slices.Clone(ev.Instances)
	return ev
}
