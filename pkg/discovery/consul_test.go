package discovery_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"regexp"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"

	"movieexample.com/internal/devconsul"
	"movieexample.com/pkg/discovery"
	"movieexample.com/pkg/identity"
)

// These tests run against a real Consul dev agent: the in-memory registry
// cannot tell us how Consul treats TTLs, reaping and lost state.

var idPattern = regexp.MustCompile(`^rating-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// newRegistry returns a Consul registry on agent, and the agent's client to
// look at what Consul holds.
func newRegistry(t *testing.T, agent *devconsul.Agent) (*discovery.Consul, *consul.Client) {
	t.Helper()
	client, err := agent.Client("")
	if err != nil {
		t.Fatal(err)
	}
	return discovery.NewConsul(client), client
}

// passingInstances returns the passing instances of service as Consul's
// health API lists them, the query callers discover instances with.
func passingInstances(c *consul.Client, service string) ([]discovery.Instance, error) {
	entries, _, err := c.Health().Service(service, "", true, nil)
	if err != nil {
		return nil, err
	}
	out := make([]discovery.Instance, 0, len(entries))
	for _, e := range entries {
		host := e.Service.Address
		if host == "" {
			host = e.Node.Address
		}
		out = append(out, discovery.Instance{ID: e.Service.ID, Service: e.Service.Service, Host: host, Port: e.Service.Port})
	}
	return out, nil
}

// passing reports whether id is among the passing instances of service; a
// failed query (Consul restarting) is not passing.
func passing(c *consul.Client, service, id string) (discovery.Instance, bool) {
	insts, err := passingInstances(c, service)
	if err != nil {
		return discovery.Instance{}, false
	}
	for _, in := range insts {
		if in.ID == id {
			return in, true
		}
	}
	return discovery.Instance{}, false
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not true within %s", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func TestConsulRegistry(t *testing.T) {
	agent := devconsul.New(t)
	reg, client := newRegistry(t, agent)
	ctx := context.Background()
	inst := discovery.Instance{ID: discovery.NewInstanceID("rating"), Service: "rating", Host: "127.0.0.1", Port: 8092}

	if got, err := passingInstances(client, "rating"); err != nil || len(got) != 0 {
		t.Fatalf("passing instances before Register: %+v, %v; want none", got, err)
	}
	if err := reg.Register(ctx, inst, 2*time.Second, time.Minute); err != nil {
		t.Fatal(err)
	}

	t.Run("passing at once with its UUID ID and address", func(t *testing.T) {
		got, ok := passing(client, "rating", inst.ID)
		if !ok {
			t.Fatal("registered instance is not passing")
		}
		if !reflect.DeepEqual(got, inst) {
			t.Errorf("listed as %+v, want %+v", got, inst)
		}
		if !idPattern.MatchString(got.ID) {
			t.Errorf("ID %q is not rating-<uuid v4>", got.ID)
		}
		svc, _, err := client.Agent().Service(inst.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := svc.Meta[identity.MetaKey], identity.Of("rating", inst.ID); got != want {
			t.Errorf("metadata %s = %q, want %q", identity.MetaKey, got, want)
		}
	})

	t.Run("critical once heartbeats stop", func(t *testing.T) {
		if err := reg.ReportHealthy(ctx, inst.ID); err != nil {
			t.Fatal(err)
		}
		took := waitFor(t, 2*time.Second+5*time.Second, "instance leaves the passing list", func() bool {
			_, ok := passing(client, "rating", inst.ID)
			return !ok
		})
		t.Logf("critical %s after the last heartbeat (TTL 2s)", took.Round(10*time.Millisecond))
		if err := reg.ReportHealthy(ctx, inst.ID); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "passing again after a heartbeat", func() bool {
			_, ok := passing(client, "rating", inst.ID)
			return ok
		})
	})

	t.Run("gone after Deregister", func(t *testing.T) {
		if err := reg.Deregister(ctx, inst.ID); err != nil {
			t.Fatal(err)
		}
		if got, err := passingInstances(client, "rating"); err != nil || len(got) != 0 {
			t.Errorf("passing instances after Deregister: %+v, %v; want none", got, err)
		}
		if err := reg.ReportHealthy(ctx, inst.ID); !errors.Is(err, discovery.ErrNotRegistered) {
			t.Errorf("heartbeat of a deregistered instance: err = %v, want ErrNotRegistered", err)
		}
		if err := reg.Deregister(ctx, inst.ID); err != nil {
			t.Errorf("second Deregister: %v", err)
		}
	})
}

func TestRegistrationSurvivesConsulRestart(t *testing.T) {
	agent := devconsul.New(t)
	reg, client := newRegistry(t, agent)
	cfg := discovery.Config{TTL: 3 * time.Second, HeartbeatInterval: time.Second, DeregisterAfter: time.Minute, StartTimeout: 10 * time.Second}
	inst := discovery.Instance{ID: discovery.NewInstanceID("metadata"), Service: "metadata", Host: "127.0.0.1", Port: 8091}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	r, err := discovery.Register(context.Background(), reg, inst, cfg, logger, discovery.NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(context.Background()) })

	if err := agent.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := passing(client, "metadata", inst.ID); ok {
		t.Fatal("a restarted dev agent should have forgotten the instance")
	}
	// Within two heartbeat intervals, as the README promises.
	took := waitFor(t, 2*cfg.HeartbeatInterval+time.Second, "instance registered again by itself", func() bool {
		_, ok := passing(client, "metadata", inst.ID)
		return ok
	})
	t.Logf("listed again %s after the agent came back", took.Round(10*time.Millisecond))
}

func TestRegisterWaitsForLateConsul(t *testing.T) {
	agent := devconsul.New(t)
	reg, client := newRegistry(t, agent)
	agent.Stop()

	cfg := discovery.Config{TTL: 3 * time.Second, HeartbeatInterval: time.Second, DeregisterAfter: time.Minute, StartTimeout: 30 * time.Second}
	inst := discovery.Instance{ID: discovery.NewInstanceID("rating"), Service: "rating", Host: "127.0.0.1", Port: 8093}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	done := make(chan error, 1)
	go func() {
		r, err := discovery.Register(context.Background(), reg, inst, cfg, logger, discovery.NewMetrics(prometheus.NewRegistry()))
		if err == nil {
			t.Cleanup(func() { r.Close(context.Background()) })
		}
		done <- err
	}()
	time.Sleep(time.Second) // Register is now retrying
	if err := agent.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Register with a late Consul: %v", err)
	}
	if _, ok := passing(client, "rating", inst.ID); !ok {
		t.Error("instance not passing after a late registration")
	}
}

func TestRegisterGivesUpOnUnreachableConsul(t *testing.T) {
	agent := devconsul.New(t)
	reg, _ := newRegistry(t, agent)
	agent.Stop()
	cfg := discovery.Config{TTL: 3 * time.Second, HeartbeatInterval: time.Second, DeregisterAfter: time.Minute, StartTimeout: time.Second}
	inst := discovery.Instance{ID: discovery.NewInstanceID("rating"), Service: "rating", Host: "127.0.0.1", Port: 8093}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	_, err := discovery.Register(context.Background(), reg, inst, cfg, logger, discovery.NewMetrics(prometheus.NewRegistry()))
	if err == nil {
		t.Fatal("Register succeeded with Consul down")
	}
	t.Logf("error: %v", err)
}
