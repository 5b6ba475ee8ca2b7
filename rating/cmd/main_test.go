package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"movieexample.com/internal/devconsul"
	"movieexample.com/rating"
)

// runMainEnv makes the test binary run main instead of the tests, so that
// the tests can start real rating processes without building a binary.
const runMainEnv = "RATING_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// lockedBuffer collects a process's output for the test log.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startInstance starts a rating process registered in agent, on dbURL, and
// returns a function that stops it with SIGTERM and waits for it to exit.
// Its log is shown if the test fails.
func startInstance(t *testing.T, agent *devconsul.Agent, dbURL string) (stop func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-host", "127.0.0.1", "-port", "0",
		"-consul-addr", agent.Addr, "-database-url", dbURL, "-drain", "0", "-log-format", "text")
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	// Killed with the test if the test is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case err := <-exited:
				if err != nil {
					t.Errorf("rating instance exited with %v", err)
				}
			case <-time.After(15 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
				t.Error("rating instance did not stop within 15s of SIGTERM")
			}
			if t.Failed() {
				t.Logf("rating instance %d log:\n%s", cmd.Process.Pid, out)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitInstances waits until n rating instances pass their Consul check and
// returns their base URLs.
func waitInstances(t *testing.T, agent *devconsul.Agent, n int) []string {
	t.Helper()
	client, err := agent.Client("")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		entries, _, err := client.Health().Service("rating", "", true, nil)
		if err == nil && len(entries) == n {
			urls := make([]string, 0, n)
			for _, e := range entries {
				urls = append(urls, "http://"+e.Service.Address+":"+strconv.Itoa(e.Service.Port))
			}
			return urls
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d passing rating instances in Consul within 60s; last answer: %d, %v", n, len(entries), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var client = &http.Client{Timeout: 30 * time.Second}

// put rates record id as user through the instance at base and returns the
// status and body.
func put(base, id, user string, value int) (int, string, error) {
	q := url.Values{"id": {id}, "type": {"movie"}, "userId": {user}, "value": {strconv.Itoa(value)}}
	req, err := http.NewRequest(http.MethodPut, base+"/rating?"+q.Encode(), nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), nil
}

func get(t *testing.T, base, id string) rating.Aggregate {
	t.Helper()
	resp, err := client.Get(base + "/rating?type=movie&id=" + url.QueryEscape(id))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var agg rating.Aggregate
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s rating %s: %s %s", base, id, resp.Status, body)
	}
	if err := json.NewDecoder(resp.Body).Decode(&agg); err != nil {
		t.Fatal(err)
	}
	return agg
}

// TestInstancesShareSQLite runs two rating processes on one SQLite file, as
// `make run` plus `go run ./rating/cmd -port 8092` do, and checks that they
// agree, that concurrent writes through both all land, and that the data
// outlives them.
func TestInstancesShareSQLite(t *testing.T) {
	agent := devconsul.New(t)
	dbURL := "sqlite:" + filepath.Join(t.TempDir(), "rating.db")
	stopA := startInstance(t, agent, dbURL)
	stopB := startInstance(t, agent, dbURL)
	urls := waitInstances(t, agent, 2)

	t.Run("a write through one is read through the other", func(t *testing.T) {
		for i, base := range urls {
			other := urls[1-i]
			if status, body, err := put(base, "shared", "zoe", i+2); err != nil || status != http.StatusOK {
				t.Fatalf("PUT through %s: %d %s %v", base, status, body, err)
			}
			if got := get(t, other, "shared"); got.Count != 1 || got.Average != float64(i+2) {
				t.Errorf("read through %s after zoe rated %d through %s: %+v", other, i+2, base, got)
			}
		}
	})

	t.Run("200 concurrent writes through both all land", func(t *testing.T) {
		const writes = 200
		type result struct {
			status int
			body   string
			err    error
		}
		results := make([]result, writes)
		var wg sync.WaitGroup
		sum := 0
		for i := range writes {
			sum += i%5 + 1
			wg.Go(func() {
				status, body, err := put(urls[i%2], "crowd", fmt.Sprintf("user%d", i), i%5+1)
				results[i] = result{status, body, err}
			})
		}
		wg.Wait()
		failed := 0
		for i, r := range results {
			if r.err != nil || r.status != http.StatusOK {
				failed++
				if failed <= 5 {
					t.Errorf("PUT %d through %s: %d %s %v", i, urls[i%2], r.status, r.body, r.err)
				}
			}
		}
		if failed > 0 {
			t.Fatalf("%d of %d concurrent PUTs failed", failed, writes)
		}
		for _, base := range urls {
			got := get(t, base, "crowd")
			if got.Count != writes || math.Abs(got.Average-float64(sum)/writes) > 1e-9 {
				t.Errorf("read through %s: %+v, want %d ratings averaging %v", base, got, writes, float64(sum)/writes)
			}
		}
	})

	t.Run("the data outlives the instances", func(t *testing.T) {
		stopA()
		stopB()
		startInstance(t, agent, dbURL)
		base := waitInstances(t, agent, 1)[0]
		if got := get(t, base, "crowd"); got.Count != 200 {
			t.Errorf("after a restart: %+v, want the 200 ratings", got)
		}
		if got := get(t, base, "1"); got.Count != 3 {
			t.Errorf("seeded movie 1 after a restart: %+v, want its 3 seeded ratings, seeded once", got)
		}
	})
}

// TestStoreFailsStart checks that a store that cannot be opened ends run with
// an error that says which, before the instance listens or registers.
func TestStoreFailsStart(t *testing.T) {
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dbURL := range []string{"sqlite:" + filepath.Join(notADir, "rating.db"), "mysql://db/rating"} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := run(ctx, []string{"-port", "0", "-consul-addr", "127.0.0.1:1", "-database-url", dbURL},
			func(string) string { return "" }, io.Discard)
		cancel()
		if err == nil {
			t.Errorf("run with -database-url %s: no error", dbURL)
		}
		t.Logf("run with -database-url %s: %v", dbURL, err)
	}
}
