package tracing

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// queue is the span processor between the request path and the exporter:
// a span that ends goes into a bounded channel, or is dropped and counted if
// the channel is full; one goroutine sends the spans in batches. A collector
// that is down or slow then fills the queue and costs requests nothing.
//
// It does what the SDK's batch span processor does, but counts what it
// loses: the SDK's processor drops spans on a full queue without saying so
// (its self-observability metrics are experimental, behind
// OTEL_GO_X_OBSERVABILITY, and need an OpenTelemetry metrics pipeline that
// movieapp, which exports Prometheus metrics, does not run).
type queue struct {
	exp           sdktrace.SpanExporter
	spans         chan sdktrace.ReadOnlySpan
	batchSize     int
	delay         time.Duration
	exportTimeout time.Duration
	m             queueMetrics

	flush chan chan struct{} // ForceFlush's requests
	stop  chan struct{}
	// abort ends an export in progress: Shutdown's deadline has passed.
	ctx      context.Context
	abort    context.CancelFunc
	stopOnce sync.Once
	done     chan struct{}
}

// queueMetrics are the queue's Prometheus series.
type queueMetrics struct {
	exported, queueFull, exportFailed prometheus.Counter
}

func newQueueMetrics(r prometheus.Registerer, spans chan sdktrace.ReadOnlySpan) queueMetrics {
	f := promauto.With(r)
	dropped := f.NewCounterVec(prometheus.CounterOpts{Namespace: "movieapp", Subsystem: "trace", Name: "spans_dropped_total",
		Help: "Spans lost on their way to the collector, by reason: queue_full (dropped at once, the request never waits) or export_failed (the collector did not take them)."},
		[]string{"reason"})
	f.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "movieapp", Subsystem: "trace", Name: "queue_spans",
		Help: "Spans waiting in the export queue."}, func() float64 { return float64(len(spans)) })
	f.NewGauge(prometheus.GaugeOpts{Namespace: "movieapp", Subsystem: "trace", Name: "queue_capacity_spans",
		Help: "The export queue's bound (OTEL_BSP_MAX_QUEUE_SIZE)."}).Set(float64(cap(spans)))
	return queueMetrics{
		exported: f.NewCounter(prometheus.CounterOpts{Namespace: "movieapp", Subsystem: "trace", Name: "spans_exported_total",
			Help: "Spans the collector accepted."}),
		queueFull:    dropped.WithLabelValues("queue_full"),
		exportFailed: dropped.WithLabelValues("export_failed"),
	}
}

func newQueue(exp sdktrace.SpanExporter, c Config, r prometheus.Registerer) *queue {
	q := &queue{
		exp:           exp,
		spans:         make(chan sdktrace.ReadOnlySpan, c.QueueSize),
		batchSize:     c.BatchSize,
		delay:         c.BatchDelay,
		exportTimeout: c.ExportTimeout,
		flush:         make(chan chan struct{}),
		stop:          make(chan struct{}),
		done:          make(chan struct{}),
	}
	q.ctx, q.abort = context.WithCancel(context.Background())
	q.m = newQueueMetrics(r, q.spans)
	go q.run()
	return q
}

// OnStart implements sdktrace.SpanProcessor.
func (q *queue) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd queues s, or drops it at once if the queue is full.
func (q *queue) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return
	}
	select {
	case q.spans <- s:
	default:
		q.m.queueFull.Inc()
	}
}

// run sends the queued spans in batches of batchSize, and whatever is
// queued every delay (a free-running timer, as the SDK's batch processor
// has), until stop; then sends what is left.
func (q *queue) run() {
	defer close(q.done)
	batch := make([]sdktrace.ReadOnlySpan, 0, q.batchSize)
	timer := time.NewTimer(q.delay)
	defer timer.Stop()
	for {
		select {
		case s := <-q.spans:
			batch = append(batch, s)
			if len(batch) >= q.batchSize {
				batch = q.export(batch)
			}
		case <-timer.C:
			batch = q.export(batch)
			timer.Reset(q.delay)
		case reply := <-q.flush:
			batch = q.export(q.drain(batch))
			close(reply)
		case <-q.stop:
			q.export(q.drain(batch))
			return
		}
	}
}

// drain moves every queued span into batch, exporting each full batch.
func (q *queue) drain(batch []sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	for {
		select {
		case s := <-q.spans:
			if batch = append(batch, s); len(batch) >= q.batchSize {
				batch = q.export(batch)
			}
		default:
			return batch
		}
	}
}

// export sends batch within the export timeout and returns it emptied for
// reuse: the exporter keeps nothing of it once ExportSpans has returned.
func (q *queue) export(batch []sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	if len(batch) == 0 {
		return batch
	}
	ctx, cancel := context.WithTimeout(q.ctx, q.exportTimeout)
	err := q.exp.ExportSpans(ctx, batch)
	cancel()
	failed := len(batch)
	if err == nil {
		failed = 0
	} else if re, ok := errors.AsType[*rejectedError](err); ok {
		failed = int(min(re.n, int64(len(batch))))
	}
	q.m.exportFailed.Add(float64(failed))
	q.m.exported.Add(float64(len(batch) - failed))
	clear(batch) // let the spans go
	return batch[:0]
}

// ForceFlush exports every span queued so far, or returns ctx's error.
func (q *queue) ForceFlush(ctx context.Context) error {
	reply := make(chan struct{})
	select {
	case q.flush <- reply:
	case <-q.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-reply:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown exports what is queued and shuts the exporter down, within ctx:
// a collector that does not answer costs the shutdown at most ctx's time,
// after which the export in progress is abandoned (its spans counted as
// failed) and the queue's goroutine ends all the same.
func (q *queue) Shutdown(ctx context.Context) error {
	q.stopOnce.Do(func() { close(q.stop) })
	var err error
	select {
	case <-q.done:
	case <-ctx.Done():
		err = ctx.Err()
		q.abort()
		<-q.done
	}
	q.abort()
	return errors.Join(err, q.exp.Shutdown(ctx))
}
