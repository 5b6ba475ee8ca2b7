// Package storetest gives movieapp's tests real, empty databases: an SQLite
// file in a temporary directory, or a database of its own on the PostgreSQL
// server named by $TEST_POSTGRES_URL (scripts/with-postgres.sh starts one),
// and ways to make either unavailable the way production databases fail.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"movieexample.com/pkg/store"
)

// PostgresEnv names the environment variable holding the URL of a
// PostgreSQL server the tests may create databases on (as a superuser).
const PostgresEnv = "TEST_POSTGRES_URL"

// Kinds are the stores a repository contract suite runs against.
var Kinds = []store.Kind{store.Memory, store.SQLite, store.Postgres}

// Config returns a fresh, empty store of kind for t, removed when t ends.
// It calls Require first.
func Config(t testing.TB, kind store.Kind) store.Config {
	t.Helper()
	var raw string
	switch kind {
	case store.Memory:
		raw = "memory"
	case store.SQLite:
		raw = "sqlite:" + filepath.Join(t.TempDir(), "test.db")
	case store.Postgres:
		raw = postgresDatabase(t)
	}
	c, err := store.ParseURL(raw)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Open opens c for t and closes it when t ends.
func Open(t testing.TB, c store.Config) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), c)
	if err != nil {
		t.Fatalf("open %s: %v", c, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Require skips t, loudly, when stores of kind cannot be had here (only
// PostgreSQL, without $TEST_POSTGRES_URL), or fails it when CI=true: CI must
// never pass on a skipped PostgreSQL test. Config calls it; a suite calls it
// once per kind to say so once.
func Require(t testing.TB, kind store.Kind) {
	t.Helper()
	if kind != store.Postgres || os.Getenv(PostgresEnv) != "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true but %s is not set: .ci/run must start PostgreSQL (scripts/with-postgres.sh)", PostgresEnv)
	}
	t.Skipf("SKIPPED: PostgreSQL tests need %s; `make test-postgres` starts a throwaway server and runs them", PostgresEnv)
}

// Backend returns a fresh store of kind for t and a function that opens a
// repository on a store's configuration the way a service instance does:
// newSQL on a database opened for t, or, for memory, one repository from
// memory() that every call returns (the "instances" of one process share
// its memory). Repository contract suites run against each of Kinds.
func Backend[R any](t testing.TB, kind store.Kind, memory func() R,
	newSQL func(context.Context, *store.DB) (R, error)) (store.Config, func(testing.TB, store.Config) R) {
	t.Helper()
	c := Config(t, kind)
	if kind == store.Memory {
		repo := memory()
		return c, func(testing.TB, store.Config) R { return repo }
	}
	return c, func(t testing.TB, c store.Config) R {
		t.Helper()
		repo, err := newSQL(context.Background(), Open(t, c))
		if err != nil {
			t.Fatalf("open repository on %s: %v", c, err)
		}
		return repo
	}
}

// StartAtOnce opens n repositories on c at the same moment, as n instances
// starting together do, and fails t unless every one starts. The handles are
// closed before it returns.
func StartAtOnce[R any](t testing.TB, c store.Config, n int, newSQL func(context.Context, *store.DB) (R, error)) {
	t.Helper()
	start := make(chan struct{})
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			<-start
			db, err := store.Open(context.Background(), c)
			if err != nil {
				errs <- err
				return
			}
			defer db.Close()
			_, err = newSQL(context.Background(), db)
			errs <- err
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("one of %d instances starting at once: %v", n, err)
		}
	}
}

// postgresDatabase creates a database of its own for t on the server at
// $TEST_POSTGRES_URL, dropped when t ends, and returns its URL.
func postgresDatabase(t testing.TB) string {
	t.Helper()
	Require(t, store.Postgres)
	server := os.Getenv(PostgresEnv)
	u, err := url.Parse(server)
	if err != nil {
		t.Fatalf("%s: malformed URL", PostgresEnv)
	}
	admin, err := sql.Open("pgx", server)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	// Lower case: PostgreSQL folds unquoted names, URLs do not.
	name := "movieapp_test_" + strings.ToLower(rand.Text())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database on %s: %v", u.Redacted(), err)
	}
	t.Cleanup(func() {
		admin, err := sql.Open("pgx", server)
		if err != nil {
			t.Error(err)
			return
		}
		defer admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// FORCE: a connection a failed test left open must not keep the
		// database alive.
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

// Breakable returns a configuration for the database c that a test can make
// unavailable by calling the returned function: for SQLite, another
// connection takes the file's write lock and holds it until t ends (the
// returned configuration waits only 100ms for it); for PostgreSQL, the
// connections go through a loopback proxy that the function cuts, as if the
// server went away. Memory cannot be made unavailable: it fails t.
func Breakable(t testing.TB, c store.Config) (store.Config, func()) {
	t.Helper()
	switch c.Kind {
	case store.SQLite:
		c.BusyTimeout = 100 * time.Millisecond
		return c, func() { holdWriteLock(t, c) }
	case store.Postgres:
		u, err := url.Parse(c.URL)
		if err != nil {
			t.Fatal(err)
		}
		p := startProxy(t, u.Host)
		u.Host = p.addr
		c.URL = u.String()
		return c, p.cut
	}
	t.Fatalf("a %s store cannot be made unavailable", c.Kind)
	return c, nil
}

// holdWriteLock takes the write lock of c's SQLite file until t ends.
func holdWriteLock(t testing.TB, c store.Config) {
	t.Helper()
	db := Open(t, c)
	tx, err := db.Write.Begin() // BEGIN IMMEDIATE: the write lock, now
	if err != nil {
		t.Fatalf("take the write lock: %v", err)
	}
	t.Cleanup(func() { _ = tx.Rollback() })
}

// proxy forwards loopback TCP connections to a target until cut.
type proxy struct {
	addr string
	ln   net.Listener

	mu    sync.Mutex
	conns []net.Conn
	isCut bool
	wg    sync.WaitGroup
}

func startProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: ln.Addr().String(), ln: ln}
	p.wg.Add(1)
	go p.accept(target)
	t.Cleanup(p.cut)
	return p
}

func (p *proxy) accept(target string) {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return // cut
		}
		out, err := net.Dial("tcp", target)
		if err != nil {
			in.Close()
			continue
		}
		if !p.track(in, out) {
			return
		}
		p.wg.Add(2)
		go p.pipe(in, out)
		go p.pipe(out, in)
	}
}

// track records a connection pair, or closes it and returns false if the
// proxy was cut meanwhile.
func (p *proxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.isCut {
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	p.conns = append(p.conns, conns...)
	return true
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	// Half a connection gone means the whole one is.
	dst.Close()
	src.Close()
}

// cut closes the listener and every connection, and waits for the copies to
// end. Cutting twice does nothing more.
func (p *proxy) cut() {
	p.mu.Lock()
	if p.isCut {
		p.mu.Unlock()
		return
	}
	p.isCut = true
	p.ln.Close()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
