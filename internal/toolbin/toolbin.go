// Package toolbin finds the servers movieapp's tests and harnesses run, as
// `make consul-bin`, `prometheus-bin` and `jaeger-bin` build them into bin/:
// one rule for all three, so that each can be pointed elsewhere the same way.
package toolbin

import (
	"os"
	"path/filepath"
	"runtime"
)

// Root returns the top of the repository.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Find returns the path in the environment variable env if it is set, else
// bin/name at the top of the repository, absolute; notFound if neither is
// set nor there. The callers' tests fail on notFound rather than skip.
func Find(env, name string, notFound error) (string, error) {
	if p := os.Getenv(env); p != "" {
		return p, nil
	}
	p := filepath.Join(Root(), "bin", name)
	if _, err := os.Stat(p); err != nil {
		return "", notFound
	}
	return filepath.Abs(p)
}
