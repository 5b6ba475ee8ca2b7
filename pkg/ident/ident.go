// Package ident defines the identifiers movieapp accepts from clients: movie
// (record) IDs and user IDs. One rule for all services keeps an ID that one
// service stores from being refused by another.
package ident

// MaxLen is the longest ID accepted.
const MaxLen = 64

// Rule describes Valid's rule for error messages.
const Rule = "1 to 64 characters from A-Z, a-z, 0-9, '.', '_' and '-'"

// Valid reports whether s is an acceptable ID: 1 to MaxLen characters of
// ASCII letters, digits, '.', '_' and '-'. The narrow set keeps IDs safe to
// put in URLs, logs and SQL without escaping surprises.
func Valid(s string) bool {
	if len(s) == 0 || len(s) > MaxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}
