package chaos

import (
	"context"
	"fmt"
	"time"
)

// consulFreeze stops the Consul agent with SIGSTOP for cfg.Freeze, then
// resumes it. Unlike the outage, Consul keeps its state and its
// connections: movie's blocking queries and the instances' heartbeats just
// wait. A freeze longer than the TTL leaves every TTL timer overdue when it
// resumes: Consul may mark every instance critical at once before the
// heartbeats that waited reach it, and a gateway that believes that
// answer has no instance left, though every one is alive.
func consulFreeze(ctx context.Context, e *Env, r *Result) error {
	if err := hold(ctx, e.cfg.Hold); err != nil {
		return err
	}
	if err := e.freezeConsul(); err != nil {
		return err
	}
	// Whatever goes wrong below, a stopped Consul would hang every later
	// step, and the processes' exits too.
	defer func() { _ = e.thawConsul() }()
	e.progress("Consul frozen (SIGSTOP) for %s", e.cfg.Freeze)
	if err := hold(ctx, e.cfg.Freeze); err != nil {
		return err
	}
	resumed := time.Now()
	if err := e.thawConsul(); err != nil {
		return err
	}
	e.progress("Consul resumed (SIGCONT)")
	if err := poll(ctx, settle, e.allPassing); err != nil {
		return fmt.Errorf("instances not all passing after the freeze: %w", err)
	}
	r.effect("resume to every instance passing", time.Since(resumed))
	settleErr := e.settled(ctx)
	// A view that lost instances on the resume, however briefly, is what
	// the load may or may not have run into: it is reported either way,
	// and a view left empty is a problem even when no request of the load
	// fell in the few milliseconds it lasted, since every instance was
	// alive and serving throughout.
	for _, service := range []string{"metadata", "rating"} {
		note := fmt.Sprintf("%s instances in movie's view after the resume: ", service)
		n, at, ok := e.fewestInView(service, resumed)
		if !ok {
			r.Notes = append(r.Notes, note+"never fewer than the live ones")
			continue
		}
		after := at.Sub(resumed).Round(time.Millisecond)
		r.Notes = append(r.Notes, note+fmt.Sprintf("down to %d of %d, %s after it", n, len(e.instances[service]), after))
		if n == 0 {
			r.Problems = append(r.Problems, fmt.Sprintf("movie's view of %s went empty %s after the resume, every instance alive", service, after))
		}
	}
	if settleErr != nil {
		return settleErr
	}
	return hold(ctx, e.cfg.Hold)
}

// fewestInView returns the fewest instances of service that movie's view
// held from since on, if ever fewer than the live ones, and when it first
// held that few.
func (e *Env) fewestInView(service string, since time.Time) (n int, at time.Time, ok bool) {
	e.movieLog.refresh()
	n = len(e.instances[service])
	for _, rec := range e.movieLog.recs {
		if rec.Msg == "discovered instances changed" && rec.Target == service && !rec.Time.Before(since) && len(rec.Instances) < n {
			n, at, ok = len(rec.Instances), rec.Time, true
		}
	}
	return n, at, ok
}
