package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"github.com/go-kit/kit/endpoint"
	"go.opentelemetry.io/otel/attribute"

	"movieexample.com/pkg/errs"
	"movieexample.com/pkg/routing"
)

// Balancer is how a call picks an instance.
type Balancer string

// The balancers.
const (
	// Random picks an instance at random, in proportion to its weight.
	Random Balancer = "random"
	// P2C, "the power of two choices", picks two instances that way and
	// calls the one with fewer of this process's calls in flight: an
	// instance that answers slowly holds more calls at once and so loses
	// most draws, without any latency to measure or tune (as Envoy's
	// least-request balancer, go-zero's and Kratos' p2c).
	P2C Balancer = "p2c"
	// P2CEWMA picks two instances as P2C does and calls the one whose
	// latency estimate (peakEWMA) times its calls in flight, plus one, per
	// unit of weight is lower, as Finagle's and linkerd's peak-EWMA
	// balancers and go-zero's p2c do. A failed attempt counts as one that
	// took the whole attempt timeout, so an instance that fails or sheds
	// fast does not look fast. docs/resilience.md compares it with P2C.
	P2CEWMA Balancer = "p2c-ewma"
)

// ParseBalancer returns the balancer called s, or an error naming the
// ones there are.
func ParseBalancer(s string) (Balancer, error) {
	switch b := Balancer(s); b {
	case Random, P2C, P2CEWMA:
		return b, nil
	}
	return "", fmt.Errorf("balancer %q: want random, p2c or p2c-ewma", s)
}

// MarshalText and UnmarshalText make a Balancer a flag (flag.TextVar).
func (b Balancer) MarshalText() ([]byte, error) { return []byte(b), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (b *Balancer) UnmarshalText(text []byte) error {
	v, err := ParseBalancer(string(text))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// node is one discovered instance with an endpoint: what stays from one
// set of instances to the next while the instance does, its breaker (in
// ep) and its load included.
type node struct {
	instance string // as discovered, routing attributes included
	ep       endpoint.Endpoint
	closer   io.Closer
	weight   int
	canary   bool
	inflight atomic.Int64 // this process's calls to it in flight (P2C, P2CEWMA)
	// latency is nil but with P2CEWMA: the other balancers read no clock.
	latency *peakEWMA
	// shedAt is when the instance last shed a call, on clock; 0 if never.
	shedAt atomic.Int64
	// spanAttrs are the attributes of its attempt spans; nil when not
	// tracing.
	spanAttrs []attribute.KeyValue
}

// epoch starts clock: a monotonic reading, which a step of the wall clock
// cannot move back.
var epoch = time.Now()

// clock returns the time since epoch, never 0 (0 is "never" in shedAt).
func clock() int64 { return int64(time.Since(epoch)) + 1 }

// shedHold is how long P2C counts an instance that shed a call as busier
// than one that did not: the Retry-After: 1 that movieapp's instances send.
const shedHold = time.Second

// shedding reports whether n shed a call within shedHold of now.
func (n *node) shedding(now int64) bool {
	at := n.shedAt.Load()
	return at != 0 && now-at < int64(shedHold)
}

// call makes one attempt on the node, counted in flight while it lasts;
// with P2CEWMA, timed, a failure counted as taking timeout.
func (n *node) call(ctx context.Context, req any, timeout time.Duration) (any, error) {
	n.inflight.Add(1)
	defer n.inflight.Add(-1) // a panicking endpoint must not leave it busy for ever
	if n.latency == nil {
		resp, err := n.ep(ctx, req)
		if err != nil && errors.Is(err, errs.ErrOverloaded) {
			n.shedAt.Store(clock())
		}
		return resp, err
	}
	start := time.Now()
	resp, err := n.ep(ctx, req)
	end := time.Now()
	if err != nil && errors.Is(err, errs.ErrOverloaded) {
		n.shedAt.Store(clock())
	}
	// A skip never reached the instance, and a call its caller gave up on
	// says nothing of how long the instance would have taken.
	if skipped(err) || errors.Is(err, context.Canceled) {
		return resp, err
	}
	d := end.Sub(start)
	if err != nil && errs.KindOf(err) != errs.NotFound {
		d = max(d, timeout)
	}
	n.latency.observe(d, end)
	return resp, err
}

// unmeasuredCost is the cost of an instance with calls in flight and no
// latency measured yet (a new one): higher than any measured one's, so that
// a new instance that hangs is not sent every call it is drawn for until its
// first answer, as Finagle's peak EWMA does.
const unmeasuredCost = float64(time.Hour)

// cost is what P2CEWMA compares: the latency estimate times the calls in
// flight plus one, per unit of weight.
func (n *node) cost(now time.Time) float64 {
	e, inflight := n.latency.estimate(now), n.inflight.Load()
	if e == 0 && inflight > 0 {
		return unmeasuredCost * float64(inflight) / float64(n.weight)
	}
	return e * float64(inflight+1) / float64(n.weight)
}

// member is a node's place in one set: idx is its index in that set's
// all, for a rotation's tried bits. A set is never changed once made, so
// calls still going over an older set keep their own indexes.
type member struct {
	*node
	idx int
}

// members is one immutable set of the callable instances: a new event
// makes a new set, keeping the nodes of the instances that stay.
type members struct {
	all []member
	// canary holds the members with the canary tag, stable the others;
	// without a canary tag, stable is all.
	canary, stable group
}

// group is a part of a set that a call picks from.
type group struct {
	ms      []member
	total   int  // the weights' sum
	uniform bool // every weight equal: a pick is one random index
}

func newGroup(ms []member) group {
	g := group{ms: ms, uniform: true}
	for _, m := range ms {
		g.total += m.weight
		g.uniform = g.uniform && m.weight == ms[0].weight
	}
	return g
}

// update returns the set for instances (sorted), reusing old's nodes of
// the instances that stay, making the others' endpoints with u.factory (a
// refused instance is left out, and logged), and closing the endpoints of
// the instances gone.
func (u *Upstream) update(old *members, instances []string) *members {
	kept := map[string]*node{}
	if old != nil {
		for _, m := range old.all {
			kept[m.instance] = m.node
		}
	}
	set := &members{}
	for _, inst := range slices.Compact(instances) {
		n, ok := kept[inst]
		if ok {
			delete(kept, inst)
		} else {
			ep, closer, err := u.factory(inst)
			if err != nil {
				u.log.Warn("instance left out: no endpoint could be made for it", "instance", inst, "err", err)
				continue
			}
			_, a := routing.Split(inst)
			n = &node{instance: inst, ep: ep, closer: closer, weight: a.Weight,
				canary: u.cfg.CanaryTag != "" && a.Has(u.cfg.CanaryTag)}
			if u.cfg.Balancer == P2CEWMA {
				n.latency = &peakEWMA{stamp: time.Now()}
			}
			if u.cfg.Tracer != nil {
				n.spanAttrs = spanAttrs(u.name, inst)
			}
		}
		set.all = append(set.all, member{node: n, idx: len(set.all)})
	}
	for _, n := range kept {
		if n.closer != nil {
			n.closer.Close()
		}
	}
	var canary, stable []member
	for _, m := range set.all {
		if m.canary {
			canary = append(canary, m)
		} else {
			stable = append(stable, m)
		}
	}
	set.canary, set.stable = newGroup(canary), newGroup(stable)
	return set
}

// close closes every member's endpoint.
func (s *members) close() {
	for _, m := range s.all {
		if m.closer != nil {
			m.closer.Close()
		}
	}
}

// rotation is the order one call tries the instances in: first the group
// the call drew (the canary instances for CanaryPercent of the calls, the
// others for the rest), then the other group, each member once, picked by
// the balancer among those not yet tried; once all were tried, again, in a
// new round.
type rotation struct {
	groups    [2]*group
	balancer  Balancer
	small     [1]uint64 // the tried bits of a set of up to 64 members...
	big       []uint64  // ...or of a larger one
	panicking bool      // every instance was found ejected: bypass the breakers
	n         int       // members in the set
	// shed holds the members that answered this call errs.ErrOverloaded,
	// which it never asks again, not even in a new round; nil until one
	// does, which most calls never see.
	shed []member
}

// start readies r for one call over set.
func (r *rotation) start(set *members, cfg *Config) {
	r.balancer, r.groups, r.n = cfg.Balancer, [2]*group{&set.stable, &set.canary}, len(set.all)
	if cfg.CanaryTag != "" && rand.Float64()*100 < cfg.CanaryPercent {
		r.groups[0], r.groups[1] = &set.canary, &set.stable
	}
	if n := len(set.all); n > 64 {
		r.big = make([]uint64, (n+63)/64)
	}
}

// word returns the word holding member i's tried bit. Indexing r.small
// here rather than keeping a slice of it keeps a rotation on its caller's
// stack: a slice into r itself would send r to the heap on every call.
func (r *rotation) word(i int) *uint64 {
	if r.big != nil {
		return &r.big[i/64]
	}
	return &r.small[0]
}

func (r *rotation) isTried(m member) bool { return *r.word(m.idx)&(1<<(m.idx%64)) != 0 }
func (r *rotation) mark(m member)         { *r.word(m.idx) |= 1 << (m.idx % 64) }
func (r *rotation) unmark(m member)       { *r.word(m.idx) &^= 1 << (m.idx % 64) }

func (r *rotation) untouched() bool {
	if r.big != nil {
		return !slices.ContainsFunc(r.big, func(w uint64) bool { return w != 0 })
	}
	return r.small[0] == 0
}

// clearTried starts a new round: every member may be tried again but the
// ones that shed the call.
func (r *rotation) clearTried() {
	r.small[0] = 0
	clear(r.big)
	for _, m := range r.shed {
		r.mark(m)
	}
}

// markShed records that m shed the call. It is marked tried already, and
// clearTried marks it again each round, so no call records it twice.
func (r *rotation) markShed(m member) {
	r.shed = append(r.shed, m)
}

// allShed reports whether every instance has shed the call.
func (r *rotation) allShed() bool { return len(r.shed) == r.n }

// next returns the next member to try and marks it tried; newRound says
// every member had been tried, so it starts another round. ok is false only
// for an empty set, or when every member has shed the call.
func (r *rotation) next() (m member, newRound, ok bool) {
	for round := 0; round < 2; round++ {
		for _, g := range r.groups {
			if m, ok := r.pick(g); ok {
				r.mark(m)
				return m, round > 0, true
			}
		}
		r.clearTried()
	}
	return member{}, false, false
}

// pick returns a member of g not tried yet, as the balancer picks it; ok is
// false if there is none. P2C compares the calls in flight per unit of
// weight, as Envoy's weighted least-request does: an instance of weight 9
// is meant to hold nine times the calls of one of weight 1; but first, an
// instance that shed a call within shedHold loses to one that did not.
func (r *rotation) pick(g *group) (member, bool) {
	first, ok := r.draw(g)
	if !ok || r.balancer == Random {
		return first, ok
	}
	r.mark(first) // so the second draw is another member
	second, ok := r.draw(g)
	r.unmark(first)
	if !ok {
		return first, true
	}
	if r.balancer == P2CEWMA {
		if now := time.Now(); second.cost(now) < first.cost(now) {
			return second, true
		}
		return first, true
	}
	// An instance that shed a call lately answers fast, with a 503: its
	// few calls in flight say nothing of its room.
	if first.shedAt.Load() != 0 || second.shedAt.Load() != 0 {
		now := clock()
		if fs, ss := first.shedding(now), second.shedding(now); fs != ss {
			if fs {
				return second, true
			}
			return first, true
		}
	}
	if second.inflight.Load()*int64(first.weight) < first.inflight.Load()*int64(second.weight) {
		return second, true
	}
	return first, true
}

// draw returns a random member of g not tried yet, in proportion to the
// weights; ok is false if there is none.
func (r *rotation) draw(g *group) (member, bool) {
	if len(g.ms) == 0 {
		return member{}, false
	}
	untouched := r.untouched()
	if untouched && g.uniform { // the usual first pick: no sums
		return g.ms[rand.IntN(len(g.ms))], true
	}
	total := g.total
	if !untouched {
		total = 0
		for _, m := range g.ms {
			if !r.isTried(m) {
				total += m.weight
			}
		}
		if total == 0 {
			return member{}, false
		}
	}
	x := rand.IntN(total)
	for _, m := range g.ms {
		if r.isTried(m) {
			continue
		}
		if x -= m.weight; x < 0 {
			return m, true
		}
	}
	return member{}, false // not reached: the untried weights sum to total
}
