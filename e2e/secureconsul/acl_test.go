// Package secureconsul runs movieapp's real binaries against a locked-down
// Consul agent. With ACLs enabled and default_policy "deny", the minimal
// token per service is enough for everything to work as without ACLs, and a
// token that lacks a permission makes a service say so plainly instead of
// retrying in silence. With TLS and client certificates, the standard
// CONSUL_* variables are all a service needs.
package secureconsul

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"movieexample.com/internal/cluster"
	"movieexample.com/internal/devconsul"
)

var binDir string // the binaries built by TestMain

func TestMain(m *testing.M) { cluster.TestMain(m, &binDir) }

// Policies are the minimal rules each service needs; the README's Security
// section shows the same ones.
var policies = map[string]string{
	"metadata": `service "metadata" { policy = "write" }`,
	"rating":   `service "rating" { policy = "write" }`,
	"movie": `service "movie" { policy = "write" }
service "metadata" { policy = "read" }
service "rating" { policy = "read" }
node_prefix "" { policy = "read" }`,
}

// agentPolicy is what the Consul agent's own token needs (devconsul names
// the node movieapp-test).
const agentPolicy = `node "movieapp-test" { policy = "write" }
service_prefix "" { policy = "read" }`

// aclAgent starts a Consul dev agent that denies everything not granted,
// bootstraps its ACL system and returns it with a management client.
func aclAgent(t *testing.T) (*devconsul.Agent, *consul.Client) {
	t.Helper()
	agent := devconsul.New(t, `-hcl=acl { enabled = true default_policy = "deny" enable_token_persistence = false }`)
	anon, err := agent.Client("")
	if err != nil {
		t.Fatal(err)
	}
	var boot *consul.ACLToken
	waitFor(t, 30*time.Second, "ACL bootstrap", func() bool {
		// The ACL system becomes ready a moment after the leader.
		boot, _, err = anon.ACL().Bootstrap()
		return err == nil
	})
	mgmt, err := agent.Client(boot.SecretID)
	if err != nil {
		t.Fatal(err)
	}
	// The agent syncs deregistrations to the catalog with its own token,
	// never the service's: without node:write on its node, a stopped
	// instance would stay listed as passing.
	agentToken := token(t, mgmt, "agent", agentPolicy)
	if _, err := mgmt.Agent().UpdateAgentACLToken(agentToken, nil); err != nil {
		t.Fatalf("set the agent token: %v", err)
	}
	return agent, mgmt
}

// token creates a policy with rules and returns the secret of a new token
// holding it.
func token(t *testing.T, mgmt *consul.Client, name, rules string) string {
	t.Helper()
	p, _, err := mgmt.ACL().PolicyCreate(&consul.ACLPolicy{Name: name, Rules: rules}, nil)
	if err != nil {
		t.Fatalf("policy %s: %v", name, err)
	}
	tok, _, err := mgmt.ACL().TokenCreate(&consul.ACLToken{Description: name, Policies: []*consul.ACLTokenPolicyLink{{ID: p.ID}}}, nil)
	if err != nil {
		t.Fatalf("token %s: %v", name, err)
	}
	return tok.SecretID
}

var client = &http.Client{Timeout: 5 * time.Second}

// env returns the environment for a service: the CONSUL_* variables of the
// test's own environment blanked (a developer's CONSUL_HTTP_TOKEN must not
// turn "no token" into "the developer's token"), then kv.
func env(kv ...string) []string {
	blank := []string{
		consul.HTTPTokenEnvName + "=", consul.HTTPTokenFileEnvName + "=", consul.HTTPAuthEnvName + "=",
		consul.HTTPSSLEnvName + "=", consul.HTTPSSLVerifyEnvName + "=", consul.HTTPTLSServerName + "=",
		consul.HTTPCAFile + "=", consul.HTTPCAPath + "=", consul.HTTPClientCert + "=", consul.HTTPClientKey + "=",
	}
	return append(blank, kv...)
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %s", what, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// start runs service with env until the test ends, and checks at the end
// that it stopped cleanly and never logged a secret.
func start(t *testing.T, agent *devconsul.Agent, service string, environ []string, secrets ...string) *cluster.Process {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := cluster.Start(ctx, binDir, service, agent.Addr, environ)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.Exited() {
			// The test stopped it and checked how.
		} else if code, err := p.Stop(); err != nil || code != 0 {
			t.Errorf("%s: exit code %d, %v; want 0", service, code, err)
		}
		for _, s := range secrets {
			if strings.Contains(p.Logs(), s) {
				t.Errorf("%s logged its Consul token", service)
			}
		}
		if t.Failed() {
			t.Logf("%s logs:\n%s", service, p.Logs())
		}
	})
	return p
}

// ready returns movie's /ready status and reason.
func ready(addr string) (int, string) {
	resp, err := client.Get("http://" + addr + "/ready")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var body struct{ Reason string }
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.Reason
}

func TestServicesWithMinimalTokens(t *testing.T) {
	agent, mgmt := aclAgent(t)
	tokens := map[string]string{}
	for s, rules := range policies {
		tokens[s] = token(t, mgmt, s, rules)
	}
	// One service reads its token from a file, as CONSUL_HTTP_TOKEN_FILE
	// allows (a mounted secret, say).
	tokenFile := filepath.Join(t.TempDir(), "rating-token")
	if err := os.WriteFile(tokenFile, []byte(tokens["rating"]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	start(t, agent, "metadata", env(consul.HTTPTokenEnvName+"="+tokens["metadata"]), tokens["metadata"])
	rating := start(t, agent, "rating", env(consul.HTTPTokenFileEnvName+"="+tokenFile), tokens["rating"])
	movie := start(t, agent, "movie", env(consul.HTTPTokenEnvName+"="+tokens["movie"]), tokens["movie"])

	waitFor(t, 30*time.Second, "movie ready", func() bool {
		code, _ := ready(movie.Addr)
		return code == http.StatusOK
	})
	resp, err := client.Get("http://" + movie.Addr + "/movie?id=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Metadata struct{ Title string }
		Rating   *float64
		Partial  []string
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != http.StatusOK ||
		got.Metadata.Title == "" || got.Rating == nil || len(got.Partial) != 0 {
		t.Fatalf("GET /movie?id=1 = %d %+v (%v), want 200 with metadata and rating", resp.StatusCode, got, err)
	}
	// The heartbeats pass the ACL check too: stay registered past a TTL.
	time.Sleep(6 * time.Second)
	passing := func(service string) int {
		entries, _, err := mgmt.Health().Service(service, "", true, nil)
		if err != nil {
			t.Fatal(err)
		}
		return len(entries)
	}
	for _, s := range []string{"metadata", "rating", "movie"} {
		if n := passing(s); n != 1 {
			t.Errorf("%s: %d passing instances after a TTL, want 1", s, n)
		}
	}
	// And so does deregistration on SIGTERM.
	if code, err := rating.Stop(); err != nil || code != 0 {
		t.Fatalf("stop rating: exit code %d, %v", code, err)
	}
	waitFor(t, 10*time.Second, "stopped rating leaves the catalog", func() bool { return passing("rating") == 0 })
}

// runToExit runs service against the Consul agent at consulAddr and returns
// its exit code and stderr, failing the test if it does not exit within a
// minute.
func runToExit(t *testing.T, service, consulAddr string, environ []string, extra ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := append([]string{"-host", "127.0.0.1", "-port", "0", "-consul-addr", consulAddr, "-log-format", "json"}, extra...)
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, service), args...)
	// DATABASE_URL=memory: a test never opens the user's own database
	// (the services default to a SQLite file in the user's data directory).
	cmd.Env = append(append(os.Environ(), "DATABASE_URL=memory"), environ...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s still running after a minute:\n%s", service, stderr.String())
	}
	code := cmd.ProcessState.ExitCode()
	if err != nil && code <= 0 {
		t.Fatalf("%s: %v\n%s", service, err, stderr.String())
	}
	return code, stderr.String()
}

func TestTokenWithoutServiceWrite(t *testing.T) {
	agent, mgmt := aclAgent(t)
	readOnly := token(t, mgmt, "read-only", `service_prefix "" { policy = "read" }`)
	tests := []struct {
		name string
		env  []string
	}{
		{"no token", env()},
		{"token without service:write", env(consul.HTTPTokenEnvName + "=" + readOnly)},
		{"unknown token", env(consul.HTTPTokenEnvName + "=6f1b2c3d-0000-4000-8000-000000000000")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stderr := runToExit(t, "metadata", agent.Addr, tt.env)
			if code == 0 {
				t.Fatalf("exit code 0, want non-zero; stderr:\n%s", stderr)
			}
			var denied []string
			for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
				if strings.Contains(strings.ToLower(line), "permission") {
					denied = append(denied, line)
				}
			}
			if len(denied) != 1 || !strings.Contains(denied[0], "Consul token lacks permission") {
				t.Errorf("want one line saying the Consul token lacks permission; stderr:\n%s", stderr)
			}
			if strings.Contains(stderr, readOnly) {
				t.Error("the token was logged")
			}
			t.Logf("exit %d: %s", code, denied)
		})
	}
}

func TestMovieTokenWithoutServiceRead(t *testing.T) {
	agent, mgmt := aclAgent(t)
	start(t, agent, "metadata", env(consul.HTTPTokenEnvName+"="+token(t, mgmt, "metadata", policies["metadata"])))
	start(t, agent, "rating", env(consul.HTTPTokenEnvName+"="+token(t, mgmt, "rating", policies["rating"])))
	// movie may register itself, but not read its upstreams.
	movieToken := token(t, mgmt, "movie-write-only", `service "movie" { policy = "write" }`)
	movie := start(t, agent, "movie", env(consul.HTTPTokenEnvName+"="+movieToken), movieToken)

	var reason string
	waitFor(t, 30*time.Second, "movie not ready for lack of permission", func() bool {
		var code int
		code, reason = ready(movie.Addr)
		return code == http.StatusServiceUnavailable && strings.Contains(reason, "permission denied")
	})
	t.Logf("/ready: %s", reason)
	for _, upstream := range []string{"metadata", "rating"} {
		if !strings.Contains(reason, upstream) {
			t.Errorf("/ready reason %q does not name %s", reason, upstream)
		}
	}
	// Waited for, not read once: /ready can say it a moment before the
	// line reaches the test through movie's stderr.
	waitFor(t, 10*time.Second, "movie logs the permission error", func() bool {
		return strings.Contains(movie.Logs(), "permission denied")
	})
}
