package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Unavailable reports whether err means the database could not do the work
// now but may later: an SQLite file locked by another writer past the busy
// timeout, a PostgreSQL server that is unreachable, restarting, out of
// connections, or that aborted a transaction to break a deadlock. Services
// answer these with 503, so that callers retry (movie's gateway retries on
// another instance); any other database error is a bug or a broken schema,
// and is a 500.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff { // the primary code, without the extended bits
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_PROTOCOL:
			return true
		}
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pgUnavailable(pe.Code)
	}
	// Not net.Error: syscall.Errno implements it, so every failed file
	// operation would pass for a network one.
	var (
		ce *pgconn.ConnectError
		oe *net.OpError
	)
	return errors.As(err, &ce) || errors.As(err, &oe) ||
		pgconn.Timeout(err) || pgconn.SafeToRetry(err) ||
		errors.Is(err, context.DeadlineExceeded) ||
		// A connection the server or the network closed under us.
		errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, io.ErrUnexpectedEOF)
}

// pgUnavailable reports whether a PostgreSQL SQLSTATE is a passing condition
// (https://www.postgresql.org/docs/current/errcodes-appendix.html).
func pgUnavailable(code string) bool {
	switch {
	case strings.HasPrefix(code, "08"): // connection exception
		return true
	case strings.HasPrefix(code, "53"): // insufficient resources: too many connections, disk full
		return true
	}
	switch code {
	case "57P01", "57P02", "57P03", // admin shutdown, crash shutdown, cannot connect now
		"40001", "40P01", // serialization failure, deadlock detected
		"55P03", // lock not available
		"57014", // query canceled (statement_timeout)
		"25006": // read-only transaction: a standby mid-failover
		return true
	}
	return false
}

// Wrap annotates a database error with op and, when Unavailable(err), also
// wraps unavailable, the calling service's own sentinel, so that its
// transport answers 503 without knowing about databases.
func Wrap(err error, op string, unavailable error) error {
	if Unavailable(err) {
		return fmt.Errorf("%s: %w: %w", op, unavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}
