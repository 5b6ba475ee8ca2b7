// Package devjaeger runs a real Jaeger v2 server (bin/jaeger, `make
// jaeger-bin`) on loopback for movieapp's tracing tests and the benchmark:
// the project's own jaeger/config.yaml, on free ports, traces in memory; and
// reads traces back through its query API.
package devjaeger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"movieexample.com/internal/freeport"
	"movieexample.com/internal/toolbin"
)

// ErrNoBinary means the Jaeger binary was not found; `make jaeger-bin`
// builds it into bin/jaeger. Tests fail on it rather than skip: a trace
// never exported to a real Jaeger is no test of tracing.
var ErrNoBinary = errors.New("jaeger binary not found: run `make jaeger-bin` (or set JAEGER_BIN)")

// Binary returns the Jaeger binary to run: $JAEGER_BIN, else bin/jaeger at
// the top of the repository.
func Binary() (string, error) { return toolbin.Find("JAEGER_BIN", "jaeger", ErrNoBinary) }

// Jaeger is a running Jaeger server.
type Jaeger struct {
	// OTLPEndpoint is the base URL of its OTLP/HTTP receiver, what
	// OTEL_EXPORTER_OTLP_ENDPOINT names.
	OTLPEndpoint string
	// QueryURL is the base URL of its query API (and UI).
	QueryURL string

	cmd      *exec.Cmd
	exit     chan struct{}
	stopOnce sync.Once
}

// Start runs bin/jaeger with jaeger/config.yaml, every listener on a free
// loopback port, and waits until its query API answers. Output goes to log
// (nil discards it).
func Start(ctx context.Context, log io.Writer) (*Jaeger, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	ports, err := freeport.Loopback(3)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = io.Discard
	}
	cmd := exec.Command(bin, "--config", filepath.Join(toolbin.Root(), "jaeger", "config.yaml"))
	cmd.Env = append(os.Environ(),
		"JAEGER_HOST=127.0.0.1",
		"JAEGER_OTLP_HTTP_PORT="+strconv.Itoa(ports[0]),
		"JAEGER_QUERY_HTTP_PORT="+strconv.Itoa(ports[1]),
		"JAEGER_QUERY_GRPC_PORT="+strconv.Itoa(ports[2]),
		"JAEGER_LOG_LEVEL=warn",
	)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start jaeger: %w", err)
	}
	j := &Jaeger{
		OTLPEndpoint: "http://127.0.0.1:" + strconv.Itoa(ports[0]),
		QueryURL:     "http://127.0.0.1:" + strconv.Itoa(ports[1]),
		cmd:          cmd,
		exit:         make(chan struct{}),
	}
	go func() {
		_ = cmd.Wait()
		close(j.exit)
	}()
	if err := j.waitReady(ctx, 60*time.Second); err != nil {
		j.Stop()
		return nil, err
	}
	return j, nil
}

// waitReady polls the query API until it answers.
func (j *Jaeger) waitReady(ctx context.Context, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for {
		select {
		case <-j.exit:
			return errors.New("jaeger exited at start")
		default:
		}
		if req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.QueryURL+"/api/services", nil); err == nil {
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("jaeger's query API at %s did not answer within %s", j.QueryURL, within)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop stops Jaeger (SIGTERM, then SIGKILL after 10s) and waits for it; the
// traces it held are gone. Stopping it twice does nothing.
func (j *Jaeger) Stop() {
	j.stopOnce.Do(func() {
		_ = j.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-j.exit:
		case <-time.After(10 * time.Second):
			_ = j.cmd.Process.Kill()
			<-j.exit
		}
	})
}

// New starts Jaeger for test t and stops it when t ends. A missing binary
// fails the test.
func New(t testing.TB) *Jaeger {
	t.Helper()
	j, err := Start(context.Background(), testWriter{t})
	if err != nil {
		t.Fatalf("jaeger: %v", err)
	}
	t.Cleanup(j.Stop)
	return j
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("jaeger: %s", p)
	return len(p), nil
}

// Trace is one trace as Jaeger's query API (/api/traces/<id>) returns it.
type Trace struct {
	TraceID   string             `json:"traceID"`
	Spans     []Span             `json:"spans"`
	Processes map[string]Process `json:"processes"`
}

// Span is one span of a Trace.
type Span struct {
	SpanID        string      `json:"spanID"`
	OperationName string      `json:"operationName"`
	References    []Reference `json:"references"`
	StartTime     int64       `json:"startTime"` // microseconds since the epoch
	Duration      int64       `json:"duration"`  // microseconds
	Tags          []KeyValue  `json:"tags"`
	ProcessID     string      `json:"processID"`
}

// Reference is a span's parent (CHILD_OF).
type Reference struct {
	RefType string `json:"refType"`
	SpanID  string `json:"spanID"`
}

// KeyValue is a tag.
type KeyValue struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

// Process is the service and resource of a trace's spans.
type Process struct {
	ServiceName string     `json:"serviceName"`
	Tags        []KeyValue `json:"tags"`
}

// Tag returns the value of the tag key as a string ("" if absent).
func Tag(tags []KeyValue, key string) string {
	for _, kv := range tags {
		if kv.Key == key {
			return fmt.Sprint(kv.Value)
		}
	}
	return ""
}

// Parent returns the span's parent span ID, "" for a root.
func (s Span) Parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

// Trace returns the trace id (32 hex digits) as Jaeger holds it now; ok is
// false if Jaeger has none of its spans yet.
func (j *Jaeger) Trace(ctx context.Context, id string) (tr Trace, ok bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.QueryURL+"/api/traces/"+id, nil)
	if err != nil {
		return Trace{}, false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Trace{}, false, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusNotFound {
		return Trace{}, false, nil
	}
	if resp.StatusCode != http.StatusOK {
		return Trace{}, false, fmt.Errorf("GET /api/traces/%s: %s %s", id, resp.Status, body)
	}
	var out struct {
		Data []Trace `json:"data"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return Trace{}, false, fmt.Errorf("GET /api/traces/%s: %w", id, err)
	}
	if len(out.Data) == 0 {
		return Trace{}, false, nil
	}
	return out.Data[0], true, nil
}

// PID returns Jaeger's process ID, for reading its /proc entries.
func (j *Jaeger) PID() int { return j.cmd.Process.Pid }
