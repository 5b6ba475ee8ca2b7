package cluster_test

import (
	"context"
	"encoding/json"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"movieexample.com/internal/cluster"
	"movieexample.com/internal/devconsul"
)

var binDir string // the binaries built by TestMain

func TestMain(m *testing.M) { cluster.TestMain(m, &binDir) }

// TestStartLeavesTheUsersDataAlone runs the three services the way every
// end-to-end test and harness does, through Start, with HOME and
// XDG_DATA_HOME pointing at an empty directory and no DATABASE_URL, which is
// how a developer's shell looks to a service: left to their defaults, the
// services would create, migrate and seed $XDG_DATA_HOME/movieapp/*.db,
// the files `make run` keeps the user's data in. Nothing may appear there.
func TestStartLeavesTheUsersDataAlone(t *testing.T) {
	home := emptyHome(t)
	agent := devconsul.New(t)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var procs []*cluster.Process
	for _, s := range cluster.Services {
		p, err := cluster.Start(ctx, binDir, s, agent.Addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
		t.Cleanup(func() {
			p.Stop() // a no-op once the test has stopped it
			if t.Failed() {
				t.Logf("%s logs:\n%s", s, p.Logs())
			}
		})
	}
	// An answer with metadata and a rating has read both stores.
	movie := procs[len(procs)-1]
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for !complete(client, movie.Addr) {
		if time.Now().After(deadline) {
			t.Fatal("GET /movie?id=1: no answer with metadata and a rating within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Stopped first, so that a file written on the way out is seen too.
	for _, p := range procs {
		if code, err := p.Stop(); err != nil || code != 0 {
			t.Errorf("%s: exit code %d, %v; want 0", p.Service, code, err)
		}
	}
	agent.Stop()

	if created := walk(t, home); len(created) > 0 {
		t.Errorf("Start wrote into HOME/XDG_DATA_HOME (%s), a user's data directory:\n  %s",
			home, strings.Join(created, "\n  "))
	}
}

// complete reports whether movie at addr answers movie 1 with its metadata
// and its rating, not a partial answer.
func complete(client *http.Client, addr string) bool {
	resp, err := client.Get("http://" + addr + "/movie?id=1")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var got struct {
		Metadata struct{ Title string }
		Rating   *float64
		Partial  []string
	}
	return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&got) == nil &&
		got.Metadata.Title != "" && got.Rating != nil && len(got.Partial) == 0
}

// emptyHome points HOME and XDG_DATA_HOME at an empty directory and unsets
// DATABASE_URL for the rest of the test, and returns the directory.
func emptyHome(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_DATA_HOME", home)
	t.Setenv("DATABASE_URL", "") // restored at the end of the test
	os.Unsetenv("DATABASE_URL")
	return home
}

// walk returns every file and directory under root, relative to it.
func walk(t *testing.T, root string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != root {
			rel, _ := filepath.Rel(root, path)
			found = append(found, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}
