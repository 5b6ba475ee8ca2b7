// Package store opens the database a movieapp service keeps its data in: an
// embedded SQLite file by default, PostgreSQL when instances run on more than
// one machine, or none at all ("memory") when a service keeps its data in its
// own process. Each service owns its tables and creates them with Migrate;
// this package only connects, migrates safely while several instances start
// at once, and tells which errors mean "the database is busy or gone, try
// again" (Unavailable).
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"movieexample.com/pkg/backoff"
)

// Errors returned by ParseURL and Open.
var (
	// ErrBadURL means a database URL is none of the accepted forms.
	ErrBadURL = errors.New("database URL must be postgres://..., postgresql://..., sqlite:PATH or memory")
	// ErrNoDefaultPath means no URL was given and the default SQLite path
	// could not be derived (no home directory, as in a scratch container).
	ErrNoDefaultPath = errors.New("no database URL given and no home directory for the default SQLite file: set -database-url or DATABASE_URL")
	// ErrMemory means Open was asked to open the in-memory store, which is
	// no database: the service builds its in-memory repository instead.
	ErrMemory = errors.New("the memory store has no database to open")
)

// Kind is a kind of store.
type Kind string

// The kinds of store.
const (
	Memory   Kind = "memory"
	SQLite   Kind = "sqlite"
	Postgres Kind = "postgres"
)

// Defaults applied by ParseURL.
const (
	// DefaultBusyTimeout is how long an SQLite write waits for another
	// instance's write before failing with an error Unavailable reports.
	// Writes take about a millisecond, so only a stuck writer or a flood
	// reaches it.
	DefaultBusyTimeout = 5 * time.Second
	// DefaultMaxConns bounds the connections one instance opens to
	// PostgreSQL: ten instances stay within PostgreSQL's default
	// max_connections of 100.
	DefaultMaxConns = 10
	// connectTimeout bounds Open's first round trip.
	connectTimeout = 10 * time.Second
)

// Config says which database to open; ParseURL builds one from a URL.
type Config struct {
	Kind Kind
	// Path is the SQLite file (Kind SQLite).
	Path string
	// URL is the PostgreSQL connection URL (Kind Postgres). It may hold a
	// password: log String(), never URL.
	URL string
	// BusyTimeout is how long an SQLite statement waits for the write lock.
	BusyTimeout time.Duration
	// MaxConns bounds the open PostgreSQL connections.
	MaxConns int
}

// ParseURL parses a database URL: "postgres://..." or "postgresql://..."
// (PostgreSQL, any URL pgx accepts), "sqlite:PATH" (an SQLite file at PATH,
// relative to the working directory unless absolute) or "memory". It returns
// ErrBadURL for anything else and ErrNoDefaultPath for "". Its errors never
// quote the URL, which may hold a password.
func ParseURL(s string) (Config, error) {
	c := Config{BusyTimeout: DefaultBusyTimeout, MaxConns: DefaultMaxConns}
	switch {
	case s == "":
		return Config{}, ErrNoDefaultPath
	case s == "memory":
		c.Kind = Memory
	case strings.HasPrefix(s, "postgres://"), strings.HasPrefix(s, "postgresql://"):
		c.Kind, c.URL = Postgres, s
	case strings.HasPrefix(s, "sqlite:"):
		c.Kind, c.Path = SQLite, strings.TrimPrefix(s, "sqlite:")
		if c.Path == "" || strings.HasPrefix(c.Path, "//") {
			// "sqlite://x" reads as a host, not a path: refuse rather
			// than guess which file was meant.
			return Config{}, fmt.Errorf("%w: sqlite: needs a file path, as in sqlite:/data/rating.db", ErrBadURL)
		}
	default:
		return Config{}, ErrBadURL
	}
	return c, nil
}

// String returns the URL with any password masked, for logs and errors.
func (c Config) String() string {
	switch c.Kind {
	case Memory:
		return "memory"
	case SQLite:
		return "sqlite:" + c.Path
	case Postgres:
		u, err := url.Parse(c.URL)
		if err != nil {
			return "postgres://(malformed URL)"
		}
		return u.Redacted()
	}
	return "(none)"
}

// DefaultPath returns the SQLite file service uses when no database URL is
// given, the same for every instance a user starts on the host:
// $XDG_DATA_HOME/movieapp/<service>.db, else the platform's per-user data
// directory (~/.local/share on Linux and BSD, ~/Library/Application Support
// on macOS, %AppData% on Windows). It returns ErrNoDefaultPath when there is
// no home directory.
func DefaultPath(service string) (string, error) {
	dir := os.Getenv("XDG_DATA_HOME")
	if dir == "" || !filepath.IsAbs(dir) { // the XDG spec says to ignore a relative one
		var err error
		switch runtime.GOOS {
		case "darwin", "windows", "ios":
			dir, err = os.UserConfigDir()
		default:
			dir, err = os.UserHomeDir()
			dir = filepath.Join(dir, ".local", "share")
		}
		if err != nil {
			return "", ErrNoDefaultPath
		}
	}
	return filepath.Join(dir, "movieapp", service+".db"), nil
}

// URLUsage describes a database URL, for the -database-url flag.
const URLUsage = "where the data lives: postgres://USER:PASSWORD@HOST/DB, sqlite:PATH or memory"

// DefaultURL returns the URL of the SQLite file at DefaultPath(service),
// the default of -database-url, or "" where there is no home directory
// (ParseURL then says how to choose one).
func DefaultURL(service string) string {
	p, err := DefaultPath(service)
	if err != nil {
		return ""
	}
	return "sqlite:" + p
}

// DB is an open database: for SQLite, one connection that writes and a pool
// that reads; for PostgreSQL, one pool that does both.
//
// SQLite lets one writer in at a time per file. Queueing this instance's
// writes on a single connection makes them wait in order inside the process
// instead of polling the file lock against each other; only writers of other
// instances meet the busy timeout. Readers never wait for the writer in WAL
// mode.
type DB struct {
	Kind  Kind
	Write *sql.DB // statements that change data, and Migrate's transactions
	Read  *sql.DB // queries; for SQLite, connections that refuse to write
}

// Open connects to the database c describes and checks that it answers. It
// returns ErrMemory for Kind Memory, and an error Unavailable reports when
// the database cannot be reached within ten seconds or ctx.
func Open(ctx context.Context, c Config) (*DB, error) {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	switch c.Kind {
	case SQLite:
		return openSQLite(ctx, c)
	case Postgres:
		return openPostgres(ctx, c)
	case Memory:
		return nil, ErrMemory
	}
	return nil, ErrBadURL
}

func openSQLite(ctx context.Context, c Config) (*DB, error) {
	path, err := filepath.Abs(c.Path)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create the database's directory: %w", err)
	}
	dsn := func(writer bool, extra ...string) string {
		q := url.Values{}
		// WAL: readers and the writer do not block each other, and
		// instances on other processes share the file safely.
		// synchronous=NORMAL: in WAL mode a commit survives a crash of
		// the process; only a power loss can undo the last commits, and
		// never corrupts the file. It saves an fsync per write.
		for _, p := range append([]string{
			fmt.Sprintf("busy_timeout(%d)", c.BusyTimeout.Milliseconds()),
			"journal_mode(WAL)",
			"synchronous(NORMAL)",
		}, extra...) {
			q.Add("_pragma", p)
		}
		if writer {
			// IMMEDIATE takes the write lock at BEGIN, so a transaction
			// that reads before it writes waits for the lock under the
			// busy timeout; a deferred one would fail at once with
			// SQLITE_BUSY when it tries to upgrade.
			q.Set("_txlock", "immediate")
		}
		return (&url.URL{Scheme: "file", Path: path, RawQuery: q.Encode()}).String()
	}
	write, err := sql.Open("sqlite", dsn(true))
	if err != nil {
		return nil, err
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	read, err := sql.Open("sqlite", dsn(false, "query_only(1)"))
	if err != nil {
		write.Close()
		return nil, err
	}
	n := max(4, runtime.GOMAXPROCS(0))
	read.SetMaxOpenConns(n)
	read.SetMaxIdleConns(n)
	db := &DB{Kind: SQLite, Write: write, Read: read}
	// The writer first: it creates the file and turns WAL on.
	for _, p := range []*sql.DB{write, read} {
		if err := pingSQLite(ctx, p); err != nil {
			db.Close()
			return nil, err
		}
	}
	return db, nil
}

// pingSQLite opens p's first connection, trying again while the file is
// busy. Instances opening a new file at once race to switch it to WAL,
// which needs the file to themselves: the losers can be answered
// SQLITE_BUSY at once rather than after the busy timeout (seen about once
// in a hundred runs of six instances starting together).
func pingSQLite(ctx context.Context, p *sql.DB) error {
	for {
		err := p.PingContext(ctx)
		if err == nil || !Unavailable(err) {
			return err
		}
		if backoff.Sleep(ctx, backoff.Jitter(10*time.Millisecond)) != nil {
			return err
		}
	}
}

func openPostgres(ctx context.Context, c Config) (*DB, error) {
	// pgx's parse errors mask the password; url.Parse's would quote it.
	pc, err := pgx.ParseConfig(c.URL)
	if err != nil {
		return nil, err
	}
	pool := stdlib.OpenDB(*pc)
	pool.SetMaxOpenConns(c.MaxConns)
	pool.SetMaxIdleConns(c.MaxConns)
	// Recycle connections now and then, so a failover or a pooler's
	// rebalancing reaches every instance eventually.
	pool.SetConnMaxLifetime(30 * time.Minute)
	pool.SetConnMaxIdleTime(5 * time.Minute)
	if err := pool.PingContext(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return &DB{Kind: Postgres, Write: pool, Read: pool}, nil
}

// Close closes the connections. For SQLite, closing the last connection to
// the file also folds the write-ahead log back into it.
func (db *DB) Close() error {
	if db.Read == db.Write {
		return db.Write.Close()
	}
	return errors.Join(db.Read.Close(), db.Write.Close())
}

// OpenRepository opens the store c describes and returns the repository a
// service keeps its data in: memory() for Kind Memory, else newSQL over the
// opened database, which creates or migrates the service's tables. The
// caller calls closeRepo once the service has stopped. Errors name the store
// with its password masked; they are meant to end the start.
func OpenRepository[R any](ctx context.Context, c Config, logger *slog.Logger,
	memory func() R, newSQL func(context.Context, *DB) (R, error)) (repo R, closeRepo func() error, err error) {
	if c.Kind == Memory {
		logger.Info("store: in memory; writes stay in this instance and are lost when it stops")
		return memory(), func() error { return nil }, nil
	}
	start := time.Now()
	db, err := Open(ctx, c)
	if err != nil {
		return repo, nil, fmt.Errorf("open store %s: %w", c, err)
	}
	if repo, err = newSQL(ctx, db); err != nil {
		db.Close()
		return repo, nil, fmt.Errorf("store %s: %w", c, err)
	}
	logger.Info("store: ready", "database", c.String(), "took", time.Since(start).Round(time.Millisecond).String())
	return repo, db.Close, nil
}
