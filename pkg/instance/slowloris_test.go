package instance_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"movieexample.com/internal/devconsul"
	"movieexample.com/pkg/discovery"
	"movieexample.com/pkg/instance"
	"movieexample.com/pkg/ops"
	"movieexample.com/pkg/web"
)

// logBuffer is a goroutine-safe log sink the test reads the listening
// address from.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) listening() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	sc := bufio.NewScanner(bytes.NewReader(b.buf.Bytes()))
	for sc.Scan() {
		var line struct{ Msg, Addr string }
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
			return line.Addr
		}
	}
	return ""
}

// configLog is what a binary passes instance.Setup to log: its whole
// configuration.
type configLog struct{ instance.Config }

func (c configLog) LogValue() slog.Value { return slog.GroupValue(c.Attrs()...) }

// startServer runs a service instance with the real server settings on
// loopback, registered in a Consul dev agent of its own, and returns its
// address.
func startServer(t *testing.T) string {
	t.Helper()
	agent := devconsul.New(t)
	cfg := instance.DefaultConfig("limits", 0)
	fs := cfg.FlagSet(io.Discard)
	args := []string{"-host", "127.0.0.1", "-port", "0", "-drain", "0", "-log-format", "json", "-consul-addr", agent.Addr}
	if err := cfg.Parse(fs, args, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	logger, err := instance.Logger(cfg, configLog{cfg}, logs)
	if err != nil {
		t.Fatal(err)
	}
	client, err := discovery.NewClient(cfg.ConsulAddr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- instance.Run(ctx, instance.App{
			Config: cfg, Logger: logger, Routes: web.NewMux(),
			Metrics: ops.NewRegistry(), Registry: discovery.NewConsul(client),
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if addr := logs.listening(); addr != "" {
			return addr
		}
		select {
		case err := <-done:
			done <- err // for the cleanup, which waits for Run
			t.Fatalf("Run returned at start: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("server not listening within 10s")
		}
	}
}

// dribble opens a connection that sends a request's headers a line at a
// time, every interval, and never ends them. It returns when the server has
// closed the connection, with how long that took, or after give-up.
func dribble(addr string, interval, giveUp time.Duration) (time.Duration, error) {
	start := time.Now()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /health HTTP/1.1\r\nHost: slow\r\n"); err != nil {
		return 0, err
	}
	buf := make([]byte, 512)
	for time.Since(start) < giveUp {
		// A write may still succeed after the server's close; the read
		// that follows sees it.
		_ = conn.SetWriteDeadline(time.Now().Add(interval))
		_, _ = io.WriteString(conn, "X-Slow: still coming\r\n")
		_ = conn.SetReadDeadline(time.Now().Add(interval))
		_, err := conn.Read(buf)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			continue // the server is still waiting for the headers
		}
		return time.Since(start), nil // EOF, reset or an error answer: cut off
	}
	return 0, errors.New("still connected after " + giveUp.String())
}

// TestSlowlorisIsCutOff opens connections that dribble headers and never
// finish them: the server must close each after ReadHeaderTimeout, and
// serve other clients all along.
func TestSlowlorisIsCutOff(t *testing.T) {
	addr := startServer(t)
	const slow = 50
	giveUp := instance.ReadHeaderTimeout + 30*time.Second
	var wg sync.WaitGroup
	errs := make(chan error, slow)
	for range slow {
		wg.Add(1)
		go func() {
			defer wg.Done()
			took, err := dribble(addr, 200*time.Millisecond, giveUp)
			switch {
			case err != nil:
				errs <- err
			case took < instance.ReadHeaderTimeout:
				// The client's clock starts before the server's, so this
				// can only mean the connection was closed for another
				// reason than the header timeout.
				errs <- errors.New("cut off after " + took.String() + ", before the header timeout")
			}
		}()
	}
	allCut := make(chan struct{})
	go func() { wg.Wait(); close(allCut) }()

	client := &http.Client{Timeout: 5 * time.Second}
	served := 0
	for done := false; !done; {
		select {
		case <-allCut:
			done = true
		case <-time.After(100 * time.Millisecond):
		}
		resp, err := client.Get("http://" + addr + "/health")
		if err != nil {
			t.Fatalf("a normal client was not served while %d slow ones were connected: %v", slow, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /health = %d, want 200", resp.StatusCode)
		}
		served++
	}
	close(errs)
	for err := range errs {
		t.Error("slow connection:", err)
	}
	t.Logf("%d slow connections cut off; %d requests served meanwhile", slow, served)
}

// TestHeaderLimit shows that headers over MaxHeaderBytes are refused with
// 431 before any handler runs.
func TestHeaderLimit(t *testing.T) {
	addr := startServer(t)
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/health", nil)
	if err != nil {
		t.Fatal(err)
	}
	// net/http allows MaxHeaderBytes plus a 4 KiB margin: go well past it.
	req.Header.Set("X-Big", strings.Repeat("x", 2*instance.MaxHeaderBytes+8<<10))
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("status = %d, want 431", resp.StatusCode)
	}
}
