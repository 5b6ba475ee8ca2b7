// Package devconsul runs a real Consul dev agent on loopback for movieapp's
// tests and harnesses: free ports, no DNS or gRPC listener, state in memory,
// and a restart that comes back empty, as a dev agent does after a crash.
package devconsul

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"movieexample.com/internal/freeport"
	"movieexample.com/internal/toolbin"
)

// ErrNoBinary means the Consul binary was not found; `make consul-bin`
// builds it into bin/consul.
var ErrNoBinary = errors.New("consul binary not found: run `make consul-bin` (or set CONSUL_BIN)")

// Binary returns the Consul binary to run: $CONSUL_BIN, else bin/consul at
// the top of the repository.
func Binary() (string, error) { return toolbin.Find("CONSUL_BIN", "consul", ErrNoBinary) }

// Agent is a running Consul dev agent.
type Agent struct {
	// Addr is the agent's HTTP address, host:port on 127.0.0.1.
	Addr string

	bin   string
	args  []string
	ports []int
	log   io.Writer
	cmd   *exec.Cmd
	exit  chan error
}

// Start starts a dev agent with extra agent arguments (for example
// "-hcl=acl { enabled = true }") and waits until it has a leader. Output goes
// to log (nil discards it).
func Start(ctx context.Context, log io.Writer, extra ...string) (*Agent, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	ports, err := freeport.Loopback(4)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = io.Discard
	}
	a := &Agent{Addr: "127.0.0.1:" + strconv.Itoa(ports[0]), bin: bin, ports: ports, log: log}
	a.args = append([]string{"agent", "-dev",
		"-bind=127.0.0.1", "-client=127.0.0.1", "-node=movieapp-test",
		"-http-port=" + strconv.Itoa(ports[0]),
		"-serf-lan-port=" + strconv.Itoa(ports[1]),
		"-serf-wan-port=" + strconv.Itoa(ports[2]),
		"-server-port=" + strconv.Itoa(ports[3]),
		"-dns-port=-1", "-grpc-port=-1", "-grpc-tls-port=-1",
		"-log-level=warn",
	}, extra...)
	return a, a.start(ctx)
}

func (a *Agent) start(ctx context.Context) error {
	cmd := exec.Command(a.bin, a.args...)
	cmd.Stdout, cmd.Stderr = a.log, a.log
	// Its own process group, so a test killed mid-way does not leave the
	// agent holding the terminal's signals.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start consul: %w", err)
	}
	a.cmd = cmd
	a.exit = make(chan error, 1)
	go func() { a.exit <- cmd.Wait() }()
	if err := a.waitLeader(ctx, 60*time.Second); err != nil {
		a.Stop()
		return err
	}
	return nil
}

// waitLeader polls the status endpoint until the dev agent has elected itself.
func (a *Agent) waitLeader(ctx context.Context, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	url := "http://" + a.Addr + "/v1/status/leader"
	for {
		select {
		case err := <-a.exit:
			a.exit <- err
			return fmt.Errorf("consul exited at start: %v", err)
		default:
		}
		if req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil); err == nil {
			if resp, err := http.DefaultClient.Do(req); err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK && len(body) > 4 { // `""` until elected
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("consul at %s had no leader within %s", a.Addr, within)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// PID returns the agent's process ID (0 when it is stopped), for reading its
// /proc entries.
func (a *Agent) PID() int {
	if a.cmd == nil {
		return 0
	}
	return a.cmd.Process.Pid
}

// Stop stops the agent (SIGTERM, then SIGKILL after 10s) and waits for it.
// Stopping a stopped agent does nothing.
func (a *Agent) Stop() {
	if a.cmd == nil {
		return
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exit:
	case <-time.After(10 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.exit
	}
	a.cmd = nil
}

// Restart stops the agent and starts it again on the same ports with empty
// state, as a Consul dev agent comes back after a restart.
func (a *Agent) Restart(ctx context.Context) error {
	a.Stop()
	return a.start(ctx)
}

// Resume starts a stopped agent again on the same ports, with empty state,
// and waits until it has a leader: with Stop, it makes an outage of any
// length. Resuming a running agent does nothing.
func (a *Agent) Resume(ctx context.Context) error {
	if a.cmd != nil {
		return nil
	}
	return a.start(ctx)
}

// Client returns a consul/api client for the agent that sends token (none if
// empty).
func (a *Agent) Client(token string) (*consul.Client, error) {
	cfg := consul.DefaultConfig()
	cfg.Address = a.Addr
	cfg.Token = token
	return consul.NewClient(cfg)
}

// New starts a dev agent for test t and stops it when t ends. A missing
// binary fails the test: a skipped Consul test must never pass for a real one.
func New(t testing.TB, extra ...string) *Agent {
	t.Helper()
	a, err := Start(context.Background(), testWriter{t}, extra...)
	if err != nil {
		t.Fatalf("consul dev agent: %v", err)
	}
	t.Cleanup(a.Stop)
	return a
}

// testWriter sends the agent's output to the test log, shown on failure.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("consul: %s", p)
	return len(p), nil
}
