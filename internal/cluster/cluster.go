// Package cluster builds movieapp's real service binaries and runs them as
// processes on loopback against a Consul agent, for the end-to-end tests and
// the churn and benchmark harnesses. Each process logs JSON; the package reads
// its listening address and instance ID from those lines.
package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Services are the three services' names, which are also their cmd folders.
var Services = []string{"metadata", "rating", "movie"}

// Build compiles the three services into dir. With race, the binaries are
// built with the race detector, so end-to-end tests also catch races in the
// services themselves.
func Build(ctx context.Context, dir string, race bool) error {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	for _, s := range Services {
		args := []string{"build", "-o", filepath.Join(dir, s)}
		if race {
			args = append(args, "-race")
		}
		args = append(args, "./"+s+"/cmd")
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %v\n%s", s, err, out)
		}
	}
	return nil
}

// Process is one running service instance.
type Process struct {
	Service    string
	InstanceID string
	Addr       string // host:port it listens on

	cmd    *exec.Cmd
	logs   *lineBuffer
	exited chan struct{}
	err    error // from Wait, valid once exited is closed
}

// Start runs the service binary from dir against the Consul agent at
// consulAddr on a free loopback port and waits until it has registered.
// extra flags and env (KEY=VALUE) are added to the defaults; the store is
// in memory unless env sets DATABASE_URL.
func Start(ctx context.Context, dir, service, consulAddr string, env []string, extra ...string) (*Process, error) {
	args := append([]string{"-host", "127.0.0.1", "-port", "0", "-consul-addr", consulAddr, "-log-format", "json"}, extra...)
	cmd := exec.Command(filepath.Join(dir, service), args...)
	// The store defaults to memory so that a test or harness never writes
	// to the user's own database (the services default to a shared SQLite
	// file in the user's data directory, and a developer may have
	// DATABASE_URL set); a caller that wants a shared store passes one in env.
	cmd.Env = append(append(os.Environ(), "DATABASE_URL=memory"), env...)
	// A harness killed mid-way must not leave services running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	p := &Process{Service: service, cmd: cmd, logs: &lineBuffer{}, exited: make(chan struct{})}
	registered := make(chan struct{})
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", service, err)
	}
	var once sync.Once
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.logs.add(line)
			var rec struct {
				Msg        string `json:"msg"`
				Addr       string `json:"addr"`
				InstanceID string `json:"instance_id"`
			}
			if json.Unmarshal([]byte(line), &rec) != nil {
				continue
			}
			switch rec.Msg {
			case "listening":
				p.logs.setAddr(rec.Addr, rec.InstanceID)
			case "registered":
				once.Do(func() { close(registered) })
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		p.err = cmd.Wait()
		close(p.exited)
	}()

	select {
	case <-registered:
		p.Addr, p.InstanceID = p.logs.addr()
		return p, nil
	case <-p.exited:
		return nil, fmt.Errorf("%s exited at start (%v):\n%s", service, p.err, p.logs.String())
	case <-ctx.Done():
		p.Kill()
		return nil, fmt.Errorf("%s did not register: %w\n%s", service, ctx.Err(), p.logs.String())
	case <-time.After(60 * time.Second):
		p.Kill()
		return nil, fmt.Errorf("%s did not register within 60s:\n%s", service, p.logs.String())
	}
}

// PID returns the process ID, for reading the process's /proc entries.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Kill sends SIGKILL (the process cannot deregister) and waits for it.
func (p *Process) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// Wait waits up to within for the process to exit and returns its exit code.
func (p *Process) Wait(within time.Duration) (int, error) {
	t := time.NewTimer(within)
	defer t.Stop()
	// Check exited first: with within 0 both cases of the select below can
	// be ready, and select would pick either.
	select {
	case <-p.exited:
	default:
		select {
		case <-p.exited:
		case <-t.C:
			return -1, fmt.Errorf("%s still running after %s", p.Service, within)
		}
	}
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0, nil
	case errors.As(p.err, &ee):
		return ee.ExitCode(), nil
	}
	return -1, p.err
}

// Stop sends SIGTERM and waits for a clean exit, killing the process if it
// takes longer than 15s. It returns the exit code.
func (p *Process) Stop() (int, error) {
	select {
	case <-p.exited:
		return p.Wait(0)
	default:
	}
	_ = p.Signal(syscall.SIGTERM)
	code, err := p.Wait(15 * time.Second)
	if err != nil {
		p.Kill()
	}
	return code, err
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// Logs returns everything the process logged so far.
func (p *Process) Logs() string { return p.logs.String() }

// LogLines returns the lines logged after the first from, so a caller
// following a long-running process reads each line once.
func (p *Process) LogLines(from int) []string { return p.logs.since(from) }

// lineBuffer collects log lines from the reader goroutine for readers on
// other goroutines.
type lineBuffer struct {
	mu       sync.Mutex
	lines    []string
	listen   string
	instance string
}

func (b *lineBuffer) add(line string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lines = append(b.lines, line)
}

func (b *lineBuffer) since(from int) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if from >= len(b.lines) {
		return nil
	}
	return slices.Clone(b.lines[from:])
}

func (b *lineBuffer) setAddr(addr, id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.listen, b.instance = addr, id
}

func (b *lineBuffer) addr() (string, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.listen, b.instance
}

func (b *lineBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var sb strings.Builder
	for _, l := range b.lines {
		sb.WriteString(l)
		sb.WriteByte('\n')
	}
	return sb.String()
}
