package observability

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"movieexample.com/internal/cluster"
	"movieexample.com/internal/devconsul"
	"movieexample.com/internal/devjaeger"
	"movieexample.com/internal/metricstest"
	"movieexample.com/pkg/requestid"
)

// randomHex returns n random bytes in hex: a trace ID is 16, a span ID 8.
func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// getTraced sends GET url as the sampled child of the span parent of trace
// traceID, as an instrumented client would, with the request ID id.
func getTraced(t *testing.T, url, traceID, parent, id string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("traceparent", "00-"+traceID+"-"+parent+"-01")
	req.Header.Set(requestid.Header, id)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// spans is a trace's spans with the service each came from.
type spans struct {
	all     []devjaeger.Span
	service map[string]string // span ID -> service.name
	tr      devjaeger.Trace
}

func newSpans(tr devjaeger.Trace) spans {
	s := spans{all: tr.Spans, service: map[string]string{}, tr: tr}
	for _, sp := range tr.Spans {
		s.service[sp.SpanID] = tr.Processes[sp.ProcessID].ServiceName
	}
	return s
}

// named returns the spans of service called op.
func (s spans) named(service, op string) []devjaeger.Span {
	var out []devjaeger.Span
	for _, sp := range s.all {
		if s.service[sp.SpanID] == service && sp.OperationName == op {
			out = append(out, sp)
		}
	}
	return out
}

// instance returns the service.instance.id of the process of sp.
func (s spans) instance(sp devjaeger.Span) string {
	return devjaeger.Tag(s.tr.Processes[sp.ProcessID].Tags, "service.instance.id")
}

// complete reports whether every process's part of the trace has arrived:
// movie's server span, which ends after its attempt spans (so they were
// queued first), and the server spans of metadata and rating.
func (s spans) complete() bool {
	return len(s.named("movie", "GET /movie")) == 1 && len(s.named("metadata", "GET /metadata")) == 1 &&
		len(s.named("rating", "GET /rating")) == 1
}

func (s spans) String() string {
	var b strings.Builder
	for _, sp := range s.all {
		fmt.Fprintf(&b, "  %s %s %q parent=%s %dus outcome=%s instance=%s error=%s\n", s.service[sp.SpanID], sp.SpanID,
			sp.OperationName, sp.Parent(), sp.Duration, devjaeger.Tag(sp.Tags, "movieapp.outcome"),
			devjaeger.Tag(sp.Tags, "movieapp.instance.id"), devjaeger.Tag(sp.Tags, "error"))
	}
	return b.String()
}

// TestOneTraceAcrossTheThreeServices runs the three services against a real
// Jaeger with one rating instance dead while movie still believes it
// passes (killed with SIGKILL, its entry passing in Consul until its long
// TTL runs out), and checks that one /movie request, sent with a traceparent,
// is one trace in Jaeger: movie's server span, a failed attempt on the dead
// instance and a retry on the other, the metadata attempt, and the server
// spans of metadata and rating as the children of the attempts that reached
// them; and that every access line of the request carries the trace's IDs.
// Then, with Jaeger stopped, movie keeps answering every request while the
// spans it cannot export are dropped and counted.
func TestOneTraceAcrossTheThreeServices(t *testing.T) {
	agent := devconsul.New(t)
	jaeger := devjaeger.New(t)
	env := []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + jaeger.OTLPEndpoint, "OTEL_BSP_SCHEDULE_DELAY=100"}
	md := cluster.StartForTest(t, binDir, "metadata", agent.Addr, env, "-access-log")
	live := cluster.StartForTest(t, binDir, "rating", agent.Addr, env, "-access-log")
	// A weight of 99 makes the dead instance the first pick of nearly every
	// call, and its TTL keeps it passing for a minute after it dies.
	dead := cluster.StartForTest(t, binDir, "rating", agent.Addr, env, "-ttl", "60s", "-weight", "99")
	// A small queue and short export timeouts, for the second half.
	mv := cluster.StartForTest(t, binDir, "movie", agent.Addr, append(env, "OTEL_BSP_MAX_QUEUE_SIZE=64",
		"OTEL_BSP_MAX_EXPORT_BATCH_SIZE=8", "OTEL_BSP_EXPORT_TIMEOUT=1000", "OTEL_EXPORTER_OTLP_TIMEOUT=500"), "-access-log")
	metrics := "http://" + mv.Addr + "/metrics"
	waitFor(t, 30*time.Second, "movie ready with both rating instances", func() bool {
		n, _ := metricstest.Scrape(t, metrics).Value("movieapp_gateway_upstream_instances", map[string]string{"target": "rating"})
		return ready(mv.Addr) && n == 2
	})
	dead.Kill()

	// The first call on the dead instance (nearly always the first) that
	// is retried gives the trace to check; the breaker ejects the instance
	// after 5 failures, so only the first few calls can.
	var (
		tr                  spans
		traceID, parent, id string
	)
	for i := 0; i < 4 && len(tr.named("movie", "rating attempt")) < 2; i++ {
		traceID, parent, id = randomHex(t, 16), randomHex(t, 8), fmt.Sprintf("traced-%d", i)
		if status := getTraced(t, "http://"+mv.Addr+"/movie?id=1", traceID, parent, id); status != http.StatusOK {
			t.Fatalf("GET /movie?id=1 = %d, want 200", status)
		}
		waitFor(t, 30*time.Second, "trace "+traceID+" complete in Jaeger", func() bool {
			got, ok, err := jaeger.Trace(context.Background(), traceID)
			if err != nil {
				t.Fatal(err)
			}
			tr = newSpans(got)
			return ok && tr.complete()
		})
	}
	t.Logf("trace %s:\n%s", traceID, tr)

	server := tr.named("movie", "GET /movie")[0]
	if server.Parent() != parent || devjaeger.Tag(server.Tags, "span.kind") != "server" {
		t.Errorf("movie's server span has parent %s and kind %s, want the client's %s and server",
			server.Parent(), devjaeger.Tag(server.Tags, "span.kind"), parent)
	}
	if got := tr.instance(server); got != mv.InstanceID {
		t.Errorf("movie's service.instance.id = %q, want %s", got, mv.InstanceID)
	}
	attempts := tr.named("movie", "rating attempt")
	if len(attempts) < 2 {
		t.Fatalf("%d rating attempt spans in the trace, want 2 (a failed attempt and its retry):\n%s", len(attempts), tr)
	}
	var answered devjaeger.Span
	instances := map[string]bool{}
	for _, a := range attempts {
		inst := devjaeger.Tag(a.Tags, "movieapp.instance.id")
		instances[inst] = true
		if a.Parent() != server.SpanID || devjaeger.Tag(a.Tags, "span.kind") != "client" {
			t.Errorf("rating attempt %s: parent %s, kind %s; want a client span under movie's server span", a.SpanID, a.Parent(), devjaeger.Tag(a.Tags, "span.kind"))
		}
		switch devjaeger.Tag(a.Tags, "movieapp.outcome") {
		case "ok":
			answered = a
			if inst != live.InstanceID {
				t.Errorf("the answered attempt went to %s, want the live instance %s", inst, live.InstanceID)
			}
		case "unavailable":
			if inst != dead.InstanceID || devjaeger.Tag(a.Tags, "error") != "true" ||
				devjaeger.Tag(a.Tags, "movieapp.retry") != "retried" || devjaeger.Tag(a.Tags, "movieapp.attempt") != "1" {
				t.Errorf("failed attempt %s: want attempt 1 on the dead instance %s, marked an error, retried:\n%s", a.SpanID, dead.InstanceID, tr)
			}
		default:
			t.Errorf("rating attempt %s: outcome %q, want ok or unavailable", a.SpanID, devjaeger.Tag(a.Tags, "movieapp.outcome"))
		}
	}
	if len(instances) < 2 || answered.SpanID == "" {
		t.Fatalf("rating attempts on %v, want two instances, one answering:\n%s", instances, tr)
	}
	if rs := tr.named("rating", "GET /rating")[0]; rs.Parent() != answered.SpanID || tr.instance(rs) != live.InstanceID {
		t.Errorf("rating's server span: parent %s on %s, want the answered attempt %s on %s", rs.Parent(), tr.instance(rs), answered.SpanID, live.InstanceID)
	}
	mdAttempts := tr.named("movie", "metadata attempt")
	if len(mdAttempts) != 1 || mdAttempts[0].Parent() != server.SpanID || devjaeger.Tag(mdAttempts[0].Tags, "movieapp.outcome") != "ok" ||
		devjaeger.Tag(mdAttempts[0].Tags, "movieapp.instance.id") != md.InstanceID {
		t.Fatalf("metadata attempts %v: want one, ok, on %s, under movie's server span", mdAttempts, md.InstanceID)
	}
	if ms := tr.named("metadata", "GET /metadata")[0]; ms.Parent() != mdAttempts[0].SpanID {
		t.Errorf("metadata's server span has parent %s, want the metadata attempt %s", ms.Parent(), mdAttempts[0].SpanID)
	}

	// Every access line of the request carries the trace ID and its own
	// server span's ID.
	for _, c := range []struct {
		p  *cluster.Process
		op string
	}{{mv, "GET /movie"}, {md, "GET /metadata"}, {live, "GET /rating"}} {
		want := tr.named(c.p.Service, c.op)[0].SpanID
		waitFor(t, 10*time.Second, c.p.Service+" logs the request", func() bool { return len(linesFor(t, c.p, id)) > 0 })
		for _, l := range linesFor(t, c.p, id) {
			if !strings.Contains(l.raw, `"trace_id":"`+traceID+`"`) || !strings.Contains(l.raw, `"span_id":"`+want+`"`) {
				t.Errorf("%s line %s: want trace_id %s and span_id %s", c.p.Service, l.raw, traceID, want)
			}
		}
	}

	neverWaitsForTheCollector(t, mv, jaeger)
}

// neverWaitsForTheCollector stops Jaeger and checks that movie answers
// every one of many requests while the spans it cannot export are dropped,
// counted, and never more than the queue's bound wait for export. How long
// the requests take is the benchmark's business (docs/benchmarks.md).
func neverWaitsForTheCollector(t *testing.T, mv *cluster.Process, jaeger *devjaeger.Jaeger) {
	t.Helper()
	jaeger.Stop()
	metrics := "http://" + mv.Addr + "/metrics"
	dropped := func() float64 {
		f := metricstest.Scrape(t, metrics)
		full, _ := f.Value("movieapp_trace_spans_dropped_total", map[string]string{"reason": "queue_full"})
		failed, _ := f.Value("movieapp_trace_spans_dropped_total", map[string]string{"reason": "export_failed"})
		return full + failed
	}
	before := dropped()
	const workers, each = 8, 25
	var wg sync.WaitGroup
	failures := make(chan string, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				resp, err := client.Get("http://" + mv.Addr + "/movie?id=1")
				if err != nil {
					failures <- fmt.Sprintf("request %d of worker %d: %v", i, w, err)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failures <- fmt.Sprintf("request %d of worker %d: %d", i, w, resp.StatusCode)
				}
			}
		})
	}
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Errorf("with Jaeger stopped, %s, want 200", f)
	}
	waitFor(t, 30*time.Second, "spans that cannot be exported counted as dropped", func() bool { return dropped() > before })
	// The bound set above is the one in force. That no request waits on
	// the exporter is TestQueueDropsAndCountsWhenTheCollectorIsStuck's
	// (pkg/tracing): with the collector stuck, a span that finds the queue
	// full is dropped at once; here, every request was answered.
	f := metricstest.Scrape(t, metrics)
	if capacity, _ := f.Value("movieapp_trace_queue_capacity_spans", nil); capacity != 64 {
		t.Errorf("queue capacity %v, want the 64 of OTEL_BSP_MAX_QUEUE_SIZE", capacity)
	}
	t.Logf("with Jaeger stopped: %d requests answered, %v spans dropped", workers*each, dropped()-before)
}
