package instance

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"movieexample.com/internal/devconsul"
	"movieexample.com/pkg/web"
)

// openHeaderless opens n connections to addr that send the start of a
// request and never end its header, then makes sure the server has taken
// them all in: it accepts in order, each through its ConnState hook before
// the next, so an answer on a connection opened after them proves it.
func openHeaderless(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := io.WriteString(c, "GET /health HTTP/1.1\r\nHost: movieapp\r\n"); err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + addr + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return conns
}

// stopAsync cancels r's context and returns a function, for the test's
// goroutine, that waits for Run to return, fails the test if it did not
// within d, and returns how long it took.
func stopAsync(t *testing.T, r *testRun) (wait func(d time.Duration) time.Duration) {
	type result struct {
		err  error
		took time.Duration
	}
	start := time.Now()
	stopped := make(chan result, 1)
	go func() {
		err := r.stop()
		stopped <- result{err, time.Since(start)}
	}()
	return func(d time.Duration) time.Duration {
		t.Helper()
		var res result
		select {
		case res = <-stopped:
		case <-time.After(time.Until(start.Add(d))):
			t.Fatalf("Run still running %s after its context ended", d)
		}
		if res.err != nil {
			t.Errorf("Run returned %v after a clean shutdown", res.err)
		}
		if res.took > d {
			t.Errorf("Run returned %s after its context ended, want within %s", res.took, d)
		}
		return res.took
	}
}

// waitListenerClosed waits until addr refuses connections: the server's
// Shutdown has begun, since closing the listener is the first thing it does.
func waitListenerClosed(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return
		}
		c.Close()
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s still accepting connections after 10s", addr)
}

// logLines parses a JSON log.
func logLines(t *testing.T, logs string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
		var line map[string]any
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		lines = append(lines, line)
	}
	return lines
}

// findLine returns the first line whose msg is msg, or nil.
func findLine(lines []map[string]any, msg string) map[string]any {
	for _, l := range lines {
		if l["msg"] == msg {
			return l
		}
	}
	return nil
}

// checkNoDeadlineLine fails the test if the log says the shutdown deadline
// passed.
func checkNoDeadlineLine(t *testing.T, lines []map[string]any) {
	t.Helper()
	for _, l := range lines {
		if msg, _ := l["msg"].(string); strings.Contains(msg, "deadline") || strings.Contains(msg, "in flight") {
			t.Errorf("log line %v with no request left at the deadline", l)
		}
	}
}

// TestShutdownClosesConnectionsThatSentNoRequest: connections that never
// finish a request header hold no request, so they must not hold the
// shutdown either (net/http's Shutdown alone waits for them until they are
// 5s old).
func TestShutdownClosesConnectionsThatSentNoRequest(t *testing.T) {
	agent := devconsul.New(t)
	const drain = 200 * time.Millisecond
	r := runApp(t, agent, web.NewMux(), "-drain", drain.String())
	conns := openHeaderless(t, r.addr, 3)

	took := stopAsync(t, r)(drain + 3*time.Second)
	t.Logf("Run returned %s after its context ended (drain %s)", took.Round(time.Millisecond), drain)
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := c.Read(make([]byte, 64))
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("connection %d still open after Run returned", i)
		}
	}
	lines := logLines(t, r.logs.String())
	checkNoDeadlineLine(t, lines)
	closed := findLine(lines, "closed connections that had sent no request")
	if closed == nil || closed["count"] != 3.0 || closed["level"] != "INFO" {
		t.Errorf("log line of the closed connections = %v, want count 3 at INFO", closed)
	}
}

// TestShutdownLetsRequestsInFlightFinish: a request in flight when the
// server shuts down gets until the shutdown timeout to finish, and the log
// says so only when it did not make it.
func TestShutdownLetsRequestsInFlightFinish(t *testing.T) {
	agent := devconsul.New(t)
	tests := []struct {
		name            string
		shutdownTimeout time.Duration
		finishes        bool // the handler ends once the server is shutting down
	}{
		{name: "finishes within the timeout", shutdownTimeout: 10 * time.Second, finishes: true},
		{name: "outlasts the timeout", shutdownTimeout: 300 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			entered, release := make(chan struct{}), make(chan struct{})
			var releaseOnce sync.Once
			t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
			mux := web.NewMux()
			mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
				close(entered)
				select {
				case <-release:
					io.WriteString(w, `{"slow":"done"}`)
				case <-r.Context().Done(): // cut off
				}
			})
			const drain = 50 * time.Millisecond
			r := runApp(t, agent, mux, "-drain", drain.String(), "-shutdown-timeout", tt.shutdownTimeout.String())

			type answer struct {
				resp *http.Response
				err  error
			}
			answered := make(chan answer, 1)
			go func() {
				resp, err := (&http.Client{Timeout: 30 * time.Second}).Get("http://" + r.addr + "/slow")
				if err == nil {
					resp.Body.Close()
				}
				answered <- answer{resp, err}
			}()
			select {
			case <-entered:
			case <-time.After(10 * time.Second):
				t.Fatal("the slow request did not reach its handler within 10s")
			}
			waitStopped := stopAsync(t, r)
			waitListenerClosed(t, r.addr)
			if tt.finishes {
				releaseOnce.Do(func() { close(release) })
			}
			within := drain + tt.shutdownTimeout + 3*time.Second
			var a answer
			select {
			case a = <-answered:
			case <-time.After(within):
				t.Fatalf("the request in flight was neither answered nor cut off within %s", within)
			}
			took := waitStopped(within)
			t.Logf("Run returned %s after its context ended", took.Round(time.Millisecond))

			lines := logLines(t, r.logs.String())
			inFlight := findLine(lines, "requests in flight at the shutdown deadline")
			if tt.finishes {
				// Connection: close is what a server that is shutting
				// down answers with: the answer came during the shutdown.
				if a.err != nil || a.resp.StatusCode != http.StatusOK || !a.resp.Close {
					t.Errorf("slow request: %v, err %v; want a 200 with Connection: close", a.resp, a.err)
				}
				checkNoDeadlineLine(t, lines)
				return
			}
			if a.err == nil {
				t.Errorf("slow request answered %d after the shutdown deadline, want it cut off", a.resp.StatusCode)
			}
			if inFlight == nil || inFlight["count"] != 1.0 || inFlight["level"] != "WARN" {
				t.Errorf("log line of the requests in flight = %v, want count 1 at WARN", inFlight)
			}
		})
	}
}
