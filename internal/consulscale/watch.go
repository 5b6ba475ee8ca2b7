package consulscale

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// change is one change to the set of instances, and when each watcher
// first saw it.
type change struct {
	needle []byte // the instance's ID as Consul's JSON writes it
	add    bool
	at     time.Time // when it was requested
	seen   []atomic.Int64
	left   atomic.Int32 // watchers that have not seen it yet
}

// visible reports whether an answer shows the change.
func (c *change) visible(body []byte) bool { return bytes.Contains(body, c.needle) == c.add }

// changes is the append-only list of one size's changes.
type changes struct {
	mu   sync.Mutex
	list []*change
	// all is signalled each time a change is seen by its last watcher.
	all chan struct{}
}

func (cs *changes) add(c *change) {
	cs.mu.Lock()
	cs.list = append(cs.list, c)
	cs.mu.Unlock()
}

func (cs *changes) snapshot() []*change {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.list
}

// watcher is one simulated gateway: its own connection to its host's agent,
// and the blocking-query loop of discovery.Instancer. It reads every answer
// in full, as a gateway does, but looks in it only for the changed
// instances' IDs instead of decoding it, so that the harness leaves the
// processors to Consul.
type watcher struct {
	n      int // its index in change.seen
	url    string
	client *http.Client
	cs     *changes

	answers, bytes, errors atomic.Int64
	from                   int // changes before this one it has seen
}

func newWatcher(n int, agent string, mode Mode, cs *changes) *watcher {
	url := "http://" + agent + "/v1/health/service/" + service
	if mode != Default {
		url += "?stale&index="
	} else {
		url += "?index="
	}
	return &watcher{n: n, url: url, cs: cs,
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}}
}

// run watches until ctx ends; ready is done after its first answer.
func (w *watcher) run(ctx context.Context, ready *sync.WaitGroup) {
	defer w.client.CloseIdleConnections()
	var index uint64
	first := true
	defer func() {
		if first { // never answered: the run is ending anyway
			ready.Done()
		}
	}()
	for ctx.Err() == nil {
		body, next, err := w.get(ctx, index)
		if err != nil {
			if ctx.Err() == nil {
				w.errors.Add(1)
				sleep(ctx, 100*time.Millisecond)
			}
			continue
		}
		// Consul's rule for a blocking query whose index went backwards:
		// start again from 0.
		if next < index {
			next = 0
		}
		index = next
		w.answers.Add(1)
		w.bytes.Add(int64(len(body)))
		w.check(body)
		if first {
			first = false
			ready.Done()
		}
	}
}

func (w *watcher) get(ctx context.Context, index uint64) ([]byte, uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.url+strconv.FormatUint(index, 10)+"&wait=5m", nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("%s", resp.Status)
	}
	next, err := strconv.ParseUint(resp.Header.Get("X-Consul-Index"), 10, 64)
	if err != nil {
		return nil, 0, fmt.Errorf("X-Consul-Index: %w", err)
	}
	return body, next, nil
}

// check marks the changes that body shows and that the watcher had not
// seen yet.
func (w *watcher) check(body []byte) {
	now := time.Now()
	list := w.cs.snapshot()
	for i := w.from; i < len(list); i++ {
		c := list[i]
		if c.seen[w.n].Load() != 0 || !c.visible(body) {
			continue
		}
		c.seen[w.n].Store(int64(now.Sub(c.at)) + 1) // 0 is "not yet"
		if c.left.Add(-1) == 0 {
			select {
			case w.cs.all <- struct{}{}:
			default:
			}
		}
	}
	for w.from < len(list) && list[w.from].seen[w.n].Load() != 0 {
		w.from++
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// measure runs one size: it registers size.Instances instances, starts
// size.Watchers watchers, churns for d, and waits (up to drain) until every
// watcher saw every change.
func (h *harness) measure(ctx context.Context, size Size, d time.Duration) (Result, error) {
	r := Result{Mode: h.mode, Size: size}
	if size.Watchers < 1 || size.Instances < 1 || size.Churn <= 0 {
		return r, fmt.Errorf("consulscale: a size needs watchers, instances and churn")
	}
	if err := h.resize(ctx, size.Instances); err != nil {
		return r, err
	}
	wctx, stop := context.WithCancel(ctx)
	cs := &changes{all: make(chan struct{}, 1)}
	ws := make([]*watcher, size.Watchers)
	var ready, done sync.WaitGroup
	for i := range ws {
		ws[i] = newWatcher(i, h.addrs[i%len(h.addrs)], h.mode, cs)
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			ws[i].run(wctx, &ready)
		}()
	}
	defer func() {
		stop()
		done.Wait()
	}()
	if err := waitGroup(ctx, &ready, time.Minute); err != nil {
		return r, fmt.Errorf("watchers' first answers: %w", err)
	}

	before, err := h.cpu()
	if err != nil {
		return r, err
	}
	queries0, err := h.serverMetric(ctx, "consul_rpc_query")
	if err != nil {
		return r, err
	}
	answers0, bytes0 := sum(ws)
	start := time.Now()
	if err := h.churn(ctx, cs, size, start.Add(d)); err != nil {
		return r, err
	}
	list := cs.snapshot()
	drain := time.NewTimer(30 * time.Second)
	defer drain.Stop()
	for !allSeen(list) {
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-drain.C:
		case <-cs.all:
			continue
		}
		break
	}
	r.Elapsed = time.Since(start)
	after, err := h.cpu()
	if err != nil {
		return r, err
	}
	queries1, err := h.serverMetric(ctx, "consul_rpc_query")
	if err != nil {
		return r, err
	}
	streams, err := h.serverMetric(ctx, "consul_grpc_server_streams")
	if err != nil {
		return r, err
	}
	answers1, bytes1 := sum(ws)

	r.Changes = len(list)
	n := float64(max(r.Changes, 1))
	r.Servers = cores(after.servers-before.servers, r.Elapsed)
	r.Leader = cores(after.each[before.leader]-before.each[before.leader], r.Elapsed)
	r.LeaderChanged = after.leader != before.leader
	r.AgentsCPU = cores(after.agents-before.agents, r.Elapsed)
	r.Harness = cores(after.self-before.self, r.Elapsed)
	r.ServerQueries = (queries1 - queries0) / n
	r.Wakeups = float64(answers1-answers0) / n
	r.Bytes = float64(bytes1-bytes0) / n
	r.Subscriptions = int(streams - h.streams)
	var all []time.Duration
	for _, c := range list {
		if c.left.Load() > 0 {
			r.Missed++
			continue
		}
		var slowest int64
		for i := range c.seen {
			slowest = max(slowest, c.seen[i].Load()-1)
		}
		all = append(all, time.Duration(slowest))
	}
	if len(all) > 0 {
		slices.Sort(all)
		r.SeenP50, r.SeenMax = all[len(all)/2], all[len(all)-1]
	}
	return r, nil
}

// churn changes the set at size.Churn changes a second until end: it
// registers an instance, then deregisters the oldest, in turn, so the set
// keeps its size. Each change goes into cs before it is made.
func (h *harness) churn(ctx context.Context, cs *changes, size Size, end time.Time) error {
	tick := time.NewTicker(time.Duration(float64(time.Second) / size.Churn))
	defer tick.Stop()
	for i := 0; time.Now().Before(end); i++ {
		var c *change
		if i%2 == 0 {
			id := h.nextID()
			c = h.newChange(id, true, size.Watchers)
			cs.add(c)
			in, err := h.register(id, len(h.live)%len(h.agents))
			if err != nil {
				return err
			}
			h.live = append(h.live, in)
		} else {
			oldest := h.live[0]
			c = h.newChange(oldest.id, false, size.Watchers)
			cs.add(c)
			if err := h.deregister(oldest); err != nil {
				return err
			}
			h.live = h.live[1:]
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

func (h *harness) newChange(id string, add bool, watchers int) *change {
	c := &change{needle: []byte(`"ID":"` + id + `"`), add: add, at: time.Now(), seen: make([]atomic.Int64, watchers)}
	c.left.Store(int32(watchers))
	return c
}

func allSeen(list []*change) bool {
	for _, c := range list {
		if c.left.Load() > 0 {
			return false
		}
	}
	return true
}

func sum(ws []*watcher) (answers, bytes int64) {
	for _, w := range ws {
		answers += w.answers.Load()
		bytes += w.bytes.Load()
	}
	return answers, bytes
}

// waitGroup waits for wg, up to within.
func waitGroup(ctx context.Context, wg *sync.WaitGroup, within time.Duration) error {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(within):
		return fmt.Errorf("not done within %s", within)
	}
}
