package consulcluster_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"movieexample.com/internal/consulcluster"
	"movieexample.com/pkg/discovery"
)

// TestCluster starts the cluster, checks that every agent listens on its own
// loopback address only, and that a killed leader is replaced and rejoins
// after a restart with the state it had: a key written before the kill is
// read back through a client agent.
func TestCluster(t *testing.T) {
	c := consulcluster.New(t, consulcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	for _, a := range c.Agents() {
		host, _, err := net.SplitHostPort(a.HTTPAddr())
		if err != nil || host != a.IP || !net.ParseIP(host).IsLoopback() {
			t.Errorf("%s: HTTP address %s, want one on its loopback address %s", a.Name, a.HTTPAddr(), a.IP)
		}
	}
	client1 := kv(t, c.Addr("client1"))
	if _, err := client1.Put(&consul.KVPair{Key: "movieapp/test", Value: []byte("kept")}, nil); err != nil {
		t.Fatalf("put through client1: %v", err)
	}

	leader, err := c.WaitLeader(ctx, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if err := c.Kill(leader.Name); err != nil {
		t.Fatal(err)
	}
	next, err := c.WaitLeader(ctx, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if next == leader {
		t.Fatalf("leader is still %s after it was killed", leader.Name)
	}
	t.Logf("%s killed; %s leader after %s", leader.Name, next.Name, time.Since(killed).Round(time.Millisecond))

	if err := c.Restart(ctx, leader.Name); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	pair, _, err := kv(t, c.Addr("client2")).Get("movieapp/test", nil)
	if err != nil || pair == nil || string(pair.Value) != "kept" {
		t.Fatalf("get through client2 = %v, %v; want %q", pair, err, "kept")
	}
}

// TestNotLoopback checks that the cluster refuses an address beyond the
// machine before it starts anything.
func TestNotLoopback(t *testing.T) {
	_, err := consulcluster.Start(context.Background(), consulcluster.Options{Servers: []string{"10.0.0.1"}})
	if err == nil || !strings.Contains(err.Error(), "not a loopback address") {
		t.Fatalf("Start with 10.0.0.1 = %v, want ErrNotLoopback", err)
	}
}

func kv(t *testing.T, addr string) *consul.KV {
	t.Helper()
	cc, err := discovery.NewClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	return cc.KV()
}
