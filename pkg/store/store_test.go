package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"movieexample.com/internal/storetest"
	"movieexample.com/pkg/store"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		url     string
		want    store.Config // Kind, Path and URL only
		wantErr error
	}{
		{url: "memory", want: store.Config{Kind: store.Memory}},
		{url: "sqlite:/data/rating.db", want: store.Config{Kind: store.SQLite, Path: "/data/rating.db"}},
		{url: "sqlite:rating.db", want: store.Config{Kind: store.SQLite, Path: "rating.db"}},
		{url: "sqlite:/a dir/x?.db", want: store.Config{Kind: store.SQLite, Path: "/a dir/x?.db"}},
		{url: "postgres://u:p@db:5432/movieapp", want: store.Config{Kind: store.Postgres, URL: "postgres://u:p@db:5432/movieapp"}},
		{url: "postgresql://db/movieapp?sslmode=require", want: store.Config{Kind: store.Postgres, URL: "postgresql://db/movieapp?sslmode=require"}},
		{url: "", wantErr: store.ErrNoDefaultPath},
		{url: "sqlite:", wantErr: store.ErrBadURL},
		{url: "sqlite://data/rating.db", wantErr: store.ErrBadURL},
		{url: "mysql://db/movieapp", wantErr: store.ErrBadURL},
		{url: "Memory", wantErr: store.ErrBadURL},
		{url: "/data/rating.db", wantErr: store.ErrBadURL},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			got, err := store.ParseURL(tt.url)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseURL(%q) error = %v, want %v", tt.url, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got.Kind != tt.want.Kind || got.Path != tt.want.Path || got.URL != tt.want.URL {
				t.Errorf("ParseURL(%q) = %+v, want %+v", tt.url, got, tt.want)
			}
			if got.BusyTimeout != store.DefaultBusyTimeout || got.MaxConns != store.DefaultMaxConns {
				t.Errorf("ParseURL(%q) limits = %s, %d; want the defaults", tt.url, got.BusyTimeout, got.MaxConns)
			}
		})
	}
}

func TestStringMasksPassword(t *testing.T) {
	for raw, want := range map[string]string{
		"postgres://movieapp:s3cret@db:5432/movieapp": "postgres://movieapp:xxxxx@db:5432/movieapp",
		"postgres://movieapp@db/movieapp":             "postgres://movieapp@db/movieapp",
		"postgres://u:s3cret@db:bad/x":                "postgres://(malformed URL)",
		"sqlite:/data/rating.db":                      "sqlite:/data/rating.db",
		"memory":                                      "memory",
	} {
		c, err := store.ParseURL(raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.String(); got != want {
			t.Errorf("String() of %q = %q, want %q", raw, got, want)
		}
	}
}

func TestDefaultPath(t *testing.T) {
	t.Run("XDG_DATA_HOME", func(t *testing.T) {
		t.Setenv("XDG_DATA_HOME", "/srv/data")
		got, err := store.DefaultPath("rating")
		if want := filepath.Join("/srv/data", "movieapp", "rating.db"); err != nil || got != want {
			t.Errorf("DefaultPath = %q, %v; want %q", got, err, want)
		}
	})
	if runtime.GOOS != "linux" {
		return
	}
	t.Run("home", func(t *testing.T) {
		t.Setenv("XDG_DATA_HOME", "relative/is/ignored")
		t.Setenv("HOME", "/home/ann")
		got, err := store.DefaultPath("metadata")
		if want := "/home/ann/.local/share/movieapp/metadata.db"; err != nil || got != want {
			t.Errorf("DefaultPath = %q, %v; want %q", got, err, want)
		}
	})
	t.Run("no home", func(t *testing.T) {
		t.Setenv("XDG_DATA_HOME", "")
		t.Setenv("HOME", "")
		if got, err := store.DefaultPath("rating"); !errors.Is(err, store.ErrNoDefaultPath) {
			t.Errorf("DefaultPath = %q, %v; want ErrNoDefaultPath", got, err)
		}
	})
}

func TestDefaultURL(t *testing.T) {
	t.Run("XDG_DATA_HOME", func(t *testing.T) {
		t.Setenv("XDG_DATA_HOME", "/srv/data")
		got := store.DefaultURL("rating")
		if want := "sqlite:" + filepath.Join("/srv/data", "movieapp", "rating.db"); got != want {
			t.Fatalf("DefaultURL = %q, want %q", got, want)
		}
		c, err := store.ParseURL(got)
		if err != nil || c.Kind != store.SQLite || c.Path != filepath.Join("/srv/data", "movieapp", "rating.db") {
			t.Errorf("ParseURL(DefaultURL) = %+v, %v; want the SQLite file at DefaultPath", c, err)
		}
	})
	if runtime.GOOS != "linux" {
		return
	}
	t.Run("no home", func(t *testing.T) {
		t.Setenv("XDG_DATA_HOME", "")
		t.Setenv("HOME", "")
		if got := store.DefaultURL("rating"); got != "" {
			t.Errorf("DefaultURL with no home = %q, want \"\"", got)
		}
	})
}

func TestOpenSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "x y.db") // a directory to create, a space to escape
	c, err := store.ParseURL("sqlite:" + path)
	if err != nil {
		t.Fatal(err)
	}
	db := storetest.Open(t, c)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the database file is not where asked: %v", err)
	}
	var mode string
	if err := db.Read.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
	if _, err := db.Write.Exec("CREATE TABLE t (x INTEGER)"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Read.Exec("INSERT INTO t VALUES (1)"); err == nil {
		t.Error("a read connection wrote")
	}
}

func TestOpenFails(t *testing.T) {
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// A port nothing listens on: bind one, note it, close it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	tests := []struct {
		name, url   string
		unavailable bool
	}{
		{"sqlite under a file", "sqlite:" + filepath.Join(notADir, "x.db"), false},
		{"postgres refusing connections", "postgres://movieapp:s3cret@" + closed + "/movieapp?sslmode=disable&connect_timeout=5", true},
		{"postgres URL malformed", "postgres://movieapp:s3cret@db:port/movieapp", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := store.ParseURL(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			db, err := store.Open(context.Background(), c)
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded")
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error shows the password: %v", err)
			}
			if got := store.Unavailable(err); got != tt.unavailable {
				t.Errorf("Unavailable(%v) = %v, want %v", err, got, tt.unavailable)
			}
		})
	}
	if _, err := store.Open(context.Background(), store.Config{Kind: store.Memory}); !errors.Is(err, store.ErrMemory) {
		t.Errorf("Open(memory) error = %v, want ErrMemory", err)
	}
}

func TestUnavailable(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("some bug"), false},
		{sql.ErrNoRows, false},
		{fmt.Errorf("wrapped: %w", context.DeadlineExceeded), true},
		{&pgconn.PgError{Code: "08006"}, true},  // connection failure
		{&pgconn.PgError{Code: "53300"}, true},  // too many connections
		{&pgconn.PgError{Code: "57P01"}, true},  // admin shutdown
		{&pgconn.PgError{Code: "40001"}, true},  // serialization failure
		{&pgconn.PgError{Code: "23505"}, false}, // unique violation: a bug
		{&pgconn.PgError{Code: "42P01"}, false}, // undefined table: a broken schema
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, true},
	}
	for _, tt := range tests {
		if got := store.Unavailable(tt.err); got != tt.want {
			t.Errorf("Unavailable(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
