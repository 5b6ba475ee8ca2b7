// Package identity is how a movieapp instance says who it is, and how a
// caller checks it. Every instance answers every request with its identity
// in the Header response header, and registers the same identity in its
// Consul entry's metadata (MetaKey). Discovery hands a caller the instance
// string of an entry, which names both the identity and the address; a
// caller accepts an answer only if it carries that identity. An address is
// only where an instance was: a process that dies leaves its entry in
// Consul until its TTL lapses, and meanwhile another one (of any service)
// may be listening on the same host and port, as containers reuse IPs and
// hosts reuse ports.
//
// The identity says who answers, not that they may: any process can send the
// header. It guards against mistakes (a stale address, an entry registered
// by hand), not against an attacker; that takes authentication between the
// services (mutual TLS), which movieapp does not set up (docs/security.md).
package identity

import (
	"fmt"
	"net/http"
	"strings"

	"movieexample.com/pkg/errs"
)

// Header is the response header that carries an instance's identity.
const Header = "Movieapp-Instance"

// MetaKey is the Consul service metadata key that carries an instance's
// identity: discovery lists only entries that have it.
const MetaKey = "movieapp_instance"

// Of returns the identity of the instance id of service: "service/id".
func Of(service, id string) string { return service + "/" + id }

// ID returns the instance ID of identity ident, what Of was given; an
// identity not made by Of is returned whole.
func ID(ident string) string {
	if _, id, ok := strings.Cut(ident, "/"); ok {
		return id
	}
	return ident
}

// Middleware answers every request next serves with ident in Header. It
// goes outermost, so that error answers (a panic recovered, an unknown
// route, a refused body) say who answered too: a caller trusts no answer
// without it.
func Middleware(ident string, next http.Handler) http.Handler {
	// One shared, already canonical value: no per-request allocation or
	// canonicalisation. Nothing appends to it (an append would copy: its
	// capacity is 1).
	v := []string{ident}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()[Header] = v
		next.ServeHTTP(w, r)
	})
}

// Instance returns the go-kit sd instance string for the instance whose
// identity is ident, listening at addr (host:port): "ident@addr". Two
// instances at one address, one after the other, have different instance
// strings, so a caller never mistakes one for the other.
func Instance(ident, addr string) string { return ident + "@" + addr }

// Split returns the identity and the address of an instance string made by
// Instance. ok is false, and both are empty, if s names no identity, as a
// plain host:port does. The address is what follows the last '@', so an
// identity may contain '@' but an address may not (a host name or IP, and
// a port, never do; an IPv6 zone could).
func Split(s string) (ident, addr string, ok bool) {
	i := strings.LastIndexByte(s, '@')
	if i <= 0 || i == len(s)-1 {
		return "", "", false
	}
	return s[:i], s[i+1:], true
}

// maxQuoted bounds how much of a foreign identity an error carries: it is
// whatever the answering process sent.
const maxQuoted = 128

// Quote returns the identity header values an answer carried, for an error
// or a log line: joined, and cut to a bounded length.
func Quote(values []string) string {
	s := strings.Join(values, ", ")
	if len(s) > maxQuoted {
		s = s[:maxQuoted] + "..."
	}
	return s
}

// ErrWrongInstance means an answer did not come from the instance discovery
// named: another process answered at its address, or one that does not say
// who it is. It is Unavailable: the named instance did not answer, and
// another instance may.
var ErrWrongInstance = errs.New(errs.Unavailable, "answer from the wrong instance")

// MismatchError is an ErrWrongInstance with what was expected and found.
type MismatchError struct {
	Addr string // where the answer came from
	Want string // the identity discovery named
	Got  string // the identity the answer carried, "" if none
}

func (e *MismatchError) Error() string {
	got := e.Got
	if got == "" {
		got = "no identity"
	}
	return fmt.Sprintf("%s: %s answered as %s, discovery named %s", ErrWrongInstance, e.Addr, got, e.Want)
}

// Unwrap makes a MismatchError an ErrWrongInstance for errors.Is, and gives
// it its kind.
func (e *MismatchError) Unwrap() error { return ErrWrongInstance }
