package readme

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"movieexample.com/internal/cluster"
	"movieexample.com/internal/devconsul"
)

// wellKnown are the ports `make run` uses, which the pages' commands name.
var wellKnown = map[string]string{
	"metadata": "8081",
	"rating":   "8082",
	"movie":    "8083",
	"consul":   "8500",
}

// Stack is what the commands run against: the well-known ports mapped to
// the free loopback ports the test's own processes listen on.
type Stack struct {
	ports map[string]string // well-known port -> actual port
	back  []portBack
}

type portBack struct {
	re   *regexp.Regexp
	port string // the well-known port
}

// NewStack maps each service's well-known port to the address in addrs
// (service -> host:port).
func NewStack(addrs map[string]string) (*Stack, error) {
	s := &Stack{ports: map[string]string{}}
	for svc, addr := range addrs {
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("%s address %q: %w", svc, addr, err)
		}
		known, ok := wellKnown[svc]
		if !ok {
			return nil, fmt.Errorf("no well-known port for %q", svc)
		}
		s.ports[known] = port
		s.back = append(s.back, portBack{regexp.MustCompile(`\b` + port + `\b`), known})
	}
	return s, nil
}

var localPort = regexp.MustCompile(`\b(localhost|127\.0\.0\.1):(8081|8082|8083|8500)\b`)

// Rewrite points command's localhost and 127.0.0.1 well-known ports at the
// stack. The host is left as written so the command does what the reader's
// would.
func (s *Stack) Rewrite(command string) string {
	return localPort.ReplaceAllStringFunc(command, func(m string) string {
		host, port, _ := strings.Cut(m, ":")
		if p, ok := s.ports[port]; ok {
			return host + ":" + p
		}
		return m
	})
}

// MapBack puts the well-known ports back into output, wherever the stack's
// ports appear as a whole number (in an address or alone, as Consul's
// "Port" field is): the reader's run prints the well-known ones.
func (s *Stack) MapBack(output string) string {
	for _, b := range s.back {
		output = b.re.ReplaceAllString(output, b.port)
	}
	return output
}

// Run runs one example's command with bash from dir and returns its
// standard output with the ports mapped back. Only stdout is compared:
// curl's progress meter goes to stderr when stdout is not a terminal, as it
// is not here, but it is in the reader's. pipefail makes a curl that fails
// in front of `| jq` an error instead of an empty output that might match.
func (s *Stack) Run(ctx context.Context, dir, command string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-o", "pipefail", "-c", s.Rewrite(command))
	cmd.Dir = dir
	// A proxy set for the machine must not see loopback requests.
	cmd.Env = append(os.Environ(), "NO_PROXY=localhost,127.0.0.1", "no_proxy=localhost,127.0.0.1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// On timeout, kill the whole process group, not only bash: a child
	// left running would outlive the test. WaitDelay stops a child holding
	// the pipes from hanging it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	out := s.MapBack(stdout.String())
	if err != nil {
		return out, fmt.Errorf("%v; stderr: %s", err, strings.TrimSpace(s.MapBack(stderr.String())))
	}
	return out, nil
}

// startStack starts what `make run` starts, for t: a Consul dev agent, then
// one metadata, one rating and one movie, on free loopback ports, with fresh
// SQLite files in a temporary directory, so the stack is a first `make run`
// (migrated and seeded) and the user's own data is never touched. It returns
// once movie is ready and every service passes its Consul check.
func startStack(t *testing.T) *Stack {
	t.Helper()
	agent := devconsul.New(t)
	data := t.TempDir()
	addrs := map[string]string{"consul": agent.Addr}
	for _, svc := range cluster.Services {
		var env []string
		if svc != "movie" { // movie keeps no data
			env = []string{"DATABASE_URL=sqlite:" + filepath.Join(data, svc+".db")}
		}
		addrs[svc] = cluster.StartForTest(t, binDir, svc, agent.Addr, env).Addr
	}
	if err := waitReady(agent, addrs["movie"], time.Minute); err != nil {
		t.Fatal(err)
	}
	s, err := NewStack(addrs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// waitReady waits until movie answers GET /ready with 200 and every service
// has a passing instance in Consul: the Consul examples list passing
// instances, and a reader runs them after `make run` has settled.
func waitReady(agent *devconsul.Agent, movie string, within time.Duration) error {
	cc, err := agent.Client("")
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(within)
	last := errors.New("not checked yet")
	for time.Now().Before(deadline) {
		if last = ready(client, movie); last == nil {
			for _, svc := range cluster.Services {
				entries, _, err := cc.Health().Service(svc, "", true, nil)
				if err == nil && len(entries) == 0 {
					err = fmt.Errorf("no passing %s instance in Consul", svc)
				}
				if err != nil {
					last = err
					break
				}
			}
		}
		if last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("stack not ready within %s: %v", within, last)
}

func ready(client *http.Client, movie string) error {
	resp, err := client.Get("http://" + movie + "/ready")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("movie /ready: %s", resp.Status)
	}
	return nil
}
