package cluster

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// TestMain is a test package's TestMain for tests that run the real
// binaries: it builds them with the race detector into a temporary folder,
// stores its path in *dir, runs the tests, and removes the folder.
func TestMain(m *testing.M, dir *string) {
	d, err := os.MkdirTemp("", "movieapp-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := Build(context.Background(), d, true); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(d)
		os.Exit(1)
	}
	*dir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

// StartForTest starts one instance for t (see Start) and stops it when t
// ends, printing its logs if t failed.
func StartForTest(t testing.TB, dir, service, consulAddr string, env []string, extra ...string) *Process {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := Start(ctx, dir, service, consulAddr, env, extra...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("%s %s logs:\n%s", service, p.InstanceID, p.Logs())
		}
	})
	return p
}
