// Package consulcluster runs a real Consul cluster on loopback for
// movieapp's tests: three servers and two client agents, each its own
// process on its own loopback address (127.0.0.11-13 for the servers,
// 127.0.0.21-22 for the clients) with its own data directory, so that a
// test can kill, stop and restart any of them as a machine would, and a
// restarted agent comes back with the state it had on disk.
//
// Unlike devconsul's dev agent, nothing here runs with -dev: the servers
// elect a leader with Raft over the network, the clients forward every read
// and write to them, and losing two servers loses quorum.
package consulcluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"movieexample.com/internal/devconsul"
)

// Options sets the cluster's addresses. The zero value is the layout the
// package comment describes.
type Options struct {
	// Servers and Clients are the loopback addresses of the servers (three,
	// so that one may fail without losing quorum) and of the client agents.
	Servers, Clients []string
	// Log receives every agent's output, each line prefixed with its name;
	// nil discards it.
	Log io.Writer
	// HCL is more configuration for every agent, after the cluster's own
	// (a later setting wins): the scale harness turns streaming off with it.
	HCL string
}

// Default addresses: on Linux the whole of 127.0.0.0/8 is loopback, so each
// agent gets an address of its own, as it would on its own machine.
var (
	DefaultServers = []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}
	DefaultClients = []string{"127.0.0.21", "127.0.0.22"}
)

// Errors returned by the cluster.
var (
	// ErrNotLoopback means an address in Options is not a loopback one:
	// the cluster never listens beyond the machine.
	ErrNotLoopback = errors.New("consulcluster: not a loopback address")
	// ErrUnknownAgent means a name is none of the cluster's agents.
	ErrUnknownAgent = errors.New("consulcluster: no such agent")
	// ErrNoLeader means the servers have no leader.
	ErrNoLeader = errors.New("consulcluster: no leader")
)

// extraHCL is the configuration every agent shares.
//
//   - raft_multiplier = 1 is Consul's production timing (its default of 5
//     suits slow shared machines); a leader is elected in about a second.
//   - Servers never leave on SIGTERM (leave_on_terminate is false for them
//     by default, and said so here), so a stopped server is a failed one, as
//     in a crash or a rolling restart, not one that shrank the Raft peers.
//   - Autopilot's min_quorum = 3 keeps it from pruning a dead server out of
//     the peers while it is down: a test brings every server back, and
//     expects it to rejoin as a voter. server_stabilization_time is cut to
//     a second so a restarted server counts as healthy soon after it is back.
const extraHCL = `performance { raft_multiplier = 1 }
autopilot {
  min_quorum = 3
  server_stabilization_time = "1s"
  last_contact_threshold = "1s"
}
`

// Agent is one agent of the cluster.
type Agent struct {
	// Name is the agent's node name: "server1".."server3", "client1"...
	Name string
	// IP is the loopback address it binds and advertises.
	IP string
	// Server says whether it is a server.
	Server bool

	nodeID  string
	dataDir string
	hcl     string // Options.HCL
	ports   ports
	joins   []string // serf LAN addresses to join
	log     io.Writer

	mu   sync.Mutex
	cmd  *exec.Cmd
	exit chan struct{}
}

type ports struct{ http, serfLAN, serfWAN, server int }

// HTTPAddr returns the agent's HTTP API address, ip:port.
func (a *Agent) HTTPAddr() string { return net.JoinHostPort(a.IP, strconv.Itoa(a.ports.http)) }

// serverAddr is the address Raft and the agents' RPC reach a server on, as
// /v1/status/leader names it.
func (a *Agent) serverAddr() string { return net.JoinHostPort(a.IP, strconv.Itoa(a.ports.server)) }

func (a *Agent) serfAddr() string { return net.JoinHostPort(a.IP, strconv.Itoa(a.ports.serfLAN)) }

// Cluster is a running Consul cluster.
type Cluster struct {
	dir    string
	agents []*Agent // servers first
	client *http.Client
}

// Start starts the cluster's servers and clients, each with a data directory
// of its own under a new temporary directory, and waits until the servers
// have a leader and every agent is an alive member. Close stops them all and
// removes the directories; on error, Start has already done so. It returns
// devconsul.ErrNoBinary without a Consul binary.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	bin, err := devconsul.Binary()
	if err != nil {
		return nil, err
	}
	if opts.Servers == nil {
		opts.Servers = DefaultServers
	}
	if opts.Clients == nil {
		opts.Clients = DefaultClients
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	dir, err := os.MkdirTemp("", "movieapp-consulcluster-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, client: &http.Client{Timeout: 2 * time.Second}}
	if err := c.lay(opts); err != nil {
		c.Close()
		return nil, err
	}
	for _, a := range c.agents {
		if err := a.start(bin); err != nil {
			c.Close()
			return nil, err
		}
	}
	if err := c.waitFormed(ctx, time.Minute); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// lay names the agents and picks their ports and directories.
func (c *Cluster) lay(opts Options) error {
	add := func(ips []string, prefix string, server bool) error {
		for i, ip := range ips {
			if parsed := net.ParseIP(ip); parsed == nil || !parsed.IsLoopback() {
				return fmt.Errorf("%w: %q", ErrNotLoopback, ip)
			}
			p, err := freePorts(ip)
			if err != nil {
				return fmt.Errorf("free ports on %s (is it a loopback address this machine routes?): %w", ip, err)
			}
			name := prefix + strconv.Itoa(i+1)
			a := &Agent{Name: name, IP: ip, Server: server, ports: p, nodeID: newNodeID(), dataDir: filepath.Join(c.dir, name),
				hcl: opts.HCL, log: &prefixWriter{prefix: name + ": ", w: opts.Log}}
			if err := os.Mkdir(a.dataDir, 0o700); err != nil {
				return err
			}
			c.agents = append(c.agents, a)
		}
		return nil
	}
	if err := add(opts.Servers, "server", true); err != nil {
		return err
	}
	if err := add(opts.Clients, "client", false); err != nil {
		return err
	}
	var servers []string
	for _, s := range c.Servers() {
		servers = append(servers, s.serfAddr())
	}
	for _, a := range c.agents {
		// A server joins the other two, a client all three: any one that
		// is up is enough, and retrying every second (the default is 30s)
		// keeps a restarted agent from waiting long for a peer that is
		// still starting.
		a.joins = slices.DeleteFunc(slices.Clone(servers), func(s string) bool { return s == a.serfAddr() })
	}
	return nil
}

func (a *Agent) args() []string {
	args := []string{"agent",
		"-node=" + a.Name, "-node-id=" + a.nodeID, "-data-dir=" + a.dataDir,
		"-bind=" + a.IP, "-client=" + a.IP, "-advertise=" + a.IP,
		"-http-port=" + strconv.Itoa(a.ports.http),
		"-serf-lan-port=" + strconv.Itoa(a.ports.serfLAN),
		"-serf-wan-port=" + strconv.Itoa(a.ports.serfWAN),
		"-server-port=" + strconv.Itoa(a.ports.server),
		"-dns-port=-1", "-grpc-port=-1", "-grpc-tls-port=-1",
		"-retry-interval=1s", "-log-level=warn",
		"-hcl=" + extraHCL,
	}
	if a.hcl != "" {
		args = append(args, "-hcl="+a.hcl)
	}
	if a.Server {
		args = append(args, "-server", "-bootstrap-expect=3")
	}
	for _, j := range a.joins {
		args = append(args, "-retry-join="+j)
	}
	return args
}

// start starts the agent's process; it does not wait for it to serve.
func (a *Agent) start(bin string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd != nil {
		return nil
	}
	cmd := exec.Command(bin, a.args()...)
	cmd.Stdout, cmd.Stderr = a.log, a.log
	// Its own process group, and killed with the test binary: an agent
	// must never outlive the test that started it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start consul %s: %w", a.Name, err)
	}
	exit := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exit)
	}()
	a.cmd, a.exit = cmd, exit
	return nil
}

// signal sends sig and waits up to within for the process to exit, killing
// it after that. An agent that is not running is left alone.
func (a *Agent) signal(sig syscall.Signal, within time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd == nil {
		return
	}
	_ = a.cmd.Process.Signal(sig)
	select {
	case <-a.exit:
	case <-time.After(within):
		_ = a.cmd.Process.Kill()
		<-a.exit
	}
	a.cmd, a.exit = nil, nil
}

// Running reports whether the agent's process runs.
func (a *Agent) Running() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd == nil {
		return false
	}
	select {
	case <-a.exit:
		return false
	default:
		return true
	}
}

// CPUTime returns the processor time, user and system, that the agent's
// process has used since it started (Linux only: it reads /proc). It
// returns an error if the agent does not run.
func (a *Agent) CPUTime() (time.Duration, error) {
	a.mu.Lock()
	cmd := a.cmd
	a.mu.Unlock()
	if cmd == nil {
		return 0, fmt.Errorf("consulcluster: %s does not run", a.Name)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// The command name, field 2, is in parentheses and may hold spaces;
	// utime and stime are fields 14 and 15, in clock ticks (USER_HZ, 100
	// on every Linux Go runs on).
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("consulcluster: short /proc stat for %s", a.Name)
	}
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("consulcluster: /proc stat for %s: %w", a.Name, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * (time.Second / 100), nil
}

// Agents returns every agent, servers first.
func (c *Cluster) Agents() []*Agent { return slices.Clone(c.agents) }

// Servers returns the servers.
func (c *Cluster) Servers() []*Agent {
	return slices.DeleteFunc(c.Agents(), func(a *Agent) bool { return !a.Server })
}

// Clients returns the client agents.
func (c *Cluster) Clients() []*Agent {
	return slices.DeleteFunc(c.Agents(), func(a *Agent) bool { return a.Server })
}

// Agent returns the agent called name, or nil.
func (c *Cluster) Agent(name string) *Agent {
	for _, a := range c.agents {
		if a.Name == name {
			return a
		}
	}
	return nil
}

func (c *Cluster) agent(name string) (*Agent, error) {
	if a := c.Agent(name); a != nil {
		return a, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownAgent, name)
}

// Addr returns the HTTP API address of the agent called name, or "".
func (c *Cluster) Addr(name string) string {
	if a := c.Agent(name); a != nil {
		return a.HTTPAddr()
	}
	return ""
}

// Kill sends SIGKILL to the agent called name and waits for it to exit: it
// neither leaves the cluster nor writes anything more to disk, as a machine
// that loses power.
func (c *Cluster) Kill(name string) error {
	a, err := c.agent(name)
	if err != nil {
		return err
	}
	a.signal(syscall.SIGKILL, 10*time.Second)
	return nil
}

// Stop sends SIGTERM to the agent called name and waits for it to exit
// (SIGKILL after 10s). A server shuts down without leaving the cluster; a
// client agent leaves it (Consul's leave_on_terminate default for each).
func (c *Cluster) Stop(name string) error {
	a, err := c.agent(name)
	if err != nil {
		return err
	}
	a.signal(syscall.SIGTERM, 10*time.Second)
	return nil
}

// Wipe empties the data directory of the stopped agent called name, so that
// it restarts knowing nothing, under the same name, address and node ID: a
// host whose disk was lost, or that was rebuilt from a configuration that
// sets its node_id. (With a new node ID, the servers refuse the agent's
// node name, still held by the old ID, until they reap the old node.) It
// returns an error if the agent runs.
func (c *Cluster) Wipe(name string) error {
	a, err := c.agent(name)
	if err != nil {
		return err
	}
	if a.Running() {
		return fmt.Errorf("consulcluster: wipe %s: it is running", name)
	}
	if err := os.RemoveAll(a.dataDir); err != nil {
		return err
	}
	return os.Mkdir(a.dataDir, 0o700)
}

// Restart starts the agent called name again, with the same data directory,
// address and ports, after stopping it (SIGTERM) if it runs, and waits until
// its HTTP API answers. It does not wait for a leader: a server restarted
// while quorum is lost has none until another comes back.
func (c *Cluster) Restart(ctx context.Context, name string) error {
	a, err := c.agent(name)
	if err != nil {
		return err
	}
	a.signal(syscall.SIGTERM, 10*time.Second)
	bin, err := devconsul.Binary()
	if err != nil {
		return err
	}
	if err := a.start(bin); err != nil {
		return err
	}
	return poll(ctx, 30*time.Second, fmt.Sprintf("%s's HTTP API", name), func() bool {
		var self json.RawMessage
		return c.get(a, "/v1/agent/self", &self) == nil
	})
}

// Leader returns the server that is the Raft leader, as the first running
// agent that answers says. It returns ErrNoLeader while there is none.
func (c *Cluster) Leader() (*Agent, error) {
	var lastErr error = ErrNoLeader
	for _, a := range c.agents {
		if !a.Running() {
			continue
		}
		var addr string
		if err := c.get(a, "/v1/status/leader", &addr); err != nil {
			lastErr = err
			continue
		}
		if addr == "" {
			return nil, ErrNoLeader
		}
		for _, s := range c.Servers() {
			if s.serverAddr() == addr {
				return s, nil
			}
		}
		return nil, fmt.Errorf("consulcluster: leader %s is none of the servers", addr)
	}
	return nil, lastErr
}

// WaitLeader waits until the servers have a leader that a running server
// other than a stopped one agrees on, and returns it.
func (c *Cluster) WaitLeader(ctx context.Context, within time.Duration) (*Agent, error) {
	var leader *Agent
	err := poll(ctx, within, "a leader", func() bool {
		l, err := c.Leader()
		if err != nil || !l.Running() {
			return false
		}
		leader = l
		return true
	})
	return leader, err
}

// WaitHealthy waits until every server is running and follows the same
// leader, and autopilot calls the servers healthy: all voters, in contact
// with the leader and caught up with its log. A rolling restart waits for it
// before taking the next server down.
func (c *Cluster) WaitHealthy(ctx context.Context, within time.Duration) error {
	return poll(ctx, within, "healthy servers", func() bool {
		// Autopilot's view lags: just after a server restarts, the leader
		// may not have noticed it went away and still call it healthy. A
		// restarted server names the leader only once the leader has
		// reached it, so ask each server too.
		leader, err := c.Leader()
		if err != nil {
			return false
		}
		for _, s := range c.Servers() {
			var addr string
			if !s.Running() || c.get(s, "/v1/status/leader", &addr) != nil || addr != leader.serverAddr() {
				return false
			}
		}
		var h struct {
			Healthy bool
			Servers []struct {
				Name    string
				Healthy bool
				Voter   bool
			}
		}
		if c.get(leader, "/v1/operator/autopilot/health", &h) != nil || !h.Healthy {
			return false
		}
		voters := 0
		for _, s := range h.Servers {
			if s.Healthy && s.Voter {
				voters++
			}
		}
		return voters == len(c.Servers())
	})
}

// WaitMembers waits until every running agent is an alive member of the
// LAN pool, as the leader sees it.
func (c *Cluster) WaitMembers(ctx context.Context, within time.Duration) error {
	return poll(ctx, within, "every agent an alive member", func() bool {
		leader, err := c.Leader()
		if err != nil {
			return false
		}
		var members []struct {
			Name   string
			Status int
		}
		if c.get(leader, "/v1/agent/members", &members) != nil {
			return false
		}
		alive := map[string]bool{}
		for _, m := range members {
			alive[m.Name] = m.Status == 1 // serf's StatusAlive
		}
		for _, a := range c.agents {
			if a.Running() && !alive[a.Name] {
				return false
			}
		}
		return true
	})
}

// waitFormed waits for a new cluster's leader and members.
func (c *Cluster) waitFormed(ctx context.Context, within time.Duration) error {
	deadline := time.Now().Add(within)
	if _, err := c.WaitLeader(ctx, within); err != nil {
		return err
	}
	return c.WaitMembers(ctx, time.Until(deadline))
}

// Close kills every agent and removes the data directories. It is safe to
// call more than once.
func (c *Cluster) Close() {
	var wg sync.WaitGroup
	for _, a := range c.agents {
		wg.Go(func() { a.signal(syscall.SIGKILL, 10*time.Second) })
	}
	wg.Wait()
	if c.dir != "" {
		_ = os.RemoveAll(c.dir)
	}
}

// New starts a cluster for test t (see Start) and closes it when t ends,
// whether it passed or not. Unless opts.Log is set, the agents' output is
// kept and goes to t's log only if t failed: five agents at warn level log a
// line for every failed Raft RPC, which would bury a passing test's figures.
// A missing Consul binary fails the test: a skipped Consul test must never
// pass for a real one.
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	var kept *lines
	if opts.Log == nil {
		kept = &lines{}
		opts.Log = kept
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := Start(ctx, opts)
	if kept != nil {
		// Registered before Close, so it runs after it: every agent has
		// exited and written all it had to say.
		t.Cleanup(func() {
			if t.Failed() && kept.String() != "" {
				t.Logf("consul agents' output (last %d lines):\n%s", maxKept, kept)
			}
		})
	}
	if err != nil {
		t.Fatalf("consul cluster: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// get decodes the JSON answer of a GET on path from agent a.
func (c *Cluster) get(a *Agent, path string, v any) error {
	resp, err := c.client.Get("http://" + a.HTTPAddr() + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s %s: %s: %s", a.Name, path, resp.Status, bytes.TrimSpace(body))
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// poll calls cond every 50ms until it is true, within passes or ctx ends.
func poll(ctx context.Context, within time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("consulcluster: %s: not within %s", what, within)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("consulcluster: %s: %w", what, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// newNodeID returns a random node ID in the UUID form Consul wants. Each
// agent keeps its own across restarts, as it keeps its name.
func newNodeID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// freePorts picks four free TCP ports on ip for one agent. The serf ports
// are UDP too; a port free for TCP on a test machine is in practice free
// for UDP, and a clash makes the agent's start fail loudly. Another process
// could take a port before Consul binds it, as with devconsul.
func freePorts(ip string) (ports, error) {
	var got []int
	for range 4 {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return ports{}, err
		}
		defer ln.Close()
		got = append(got, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports{http: got[0], serfLAN: got[1], serfWAN: got[2], server: got[3]}, nil
}

// prefixWriter writes each line to w with prefix. Each agent's process
// has its own, written to by exec's copying goroutine only.
type prefixWriter struct {
	prefix string
	w      io.Writer
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		_, _ = io.WriteString(p.w, p.prefix+string(p.buf[:i+1]))
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}

// maxKept is how many lines of the agents' output New keeps.
const maxKept = 400

// lines keeps the last maxKept lines written to it, from every agent's
// copying goroutine.
type lines struct {
	mu   sync.Mutex
	kept []string
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.kept = append(l.kept, strings.TrimRight(string(p), "\n"))
	if len(l.kept) > maxKept {
		l.kept = slices.Delete(l.kept, 0, len(l.kept)-maxKept)
	}
	return len(p), nil
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.kept, "\n")
}
